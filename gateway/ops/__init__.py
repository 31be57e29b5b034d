"""Operations: admin API, metrics, request observer, access log."""
