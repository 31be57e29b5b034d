"""Country of an address from a MaxMind-format database (GeoIP2/GeoLite2 Country or City).

The database is memory-mapped once per file (`country_database`) and shared by
every rule naming it; a lookup reads `country.iso_code`, else
`registered_country.iso_code`, and answers "" for addresses it does not know.
Which database to use is the operator's choice (`access.geoipDatabase`); the
tests build a tiny one with `mmdb-writer`.
"""

from __future__ import annotations

from typing import Any, Final

import maxminddb

from gateway.file_stamp import file_stamp


class CountryDatabase:
    """Address → ISO 3166 country code (upper case), "" when unknown."""

    __slots__ = ("path", "reader", "stamp")

    def __init__(self, path: str) -> None:
        self.path = path
        self.reader: Any = maxminddb.open_database(path, maxminddb.MODE_MMAP)
        self.stamp = file_stamp(path)

    def country(self, address: str) -> str:
        try:
            record = self.reader.get(address)
        except ValueError:
            return ""
        if not isinstance(record, dict):
            return ""
        for key in ("country", "registered_country"):
            part = record.get(key)
            if isinstance(part, dict):
                code = part.get("iso_code")
                if isinstance(code, str):
                    return code.upper()
        return ""


_OPEN: Final[dict[str, CountryDatabase]] = {}


def country_database(path: str) -> CountryDatabase:
    """The database at `path`, opened once; reopened when the file was replaced.

    Called when a table is compiled (never per request), so a new database
    file takes effect on the next reload.
    """
    found = _OPEN.get(path)
    if found is None or found.stamp != file_stamp(path):
        found = _OPEN[path] = CountryDatabase(path)
    return found
