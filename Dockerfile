# portway: the gateway and the controller in one image (`portway VERB`).
#
# Stage 1 builds a virtualenv with `pip install .`, which compiles the HTTP
# hot path with mypyc (setup.py; needs gcc, present only in this stage) and
# fails the build if the compiled modules are not the ones that load.
# Stage 2 is the slim runtime: the virtualenv, no compiler, a non-root user.
#
#   docker build -t portway .
#   docker run --rm -p 8080:8080 -p 9901:9901 -v $PWD/config:/etc/portway:ro portway \
#       gateway --config /etc/portway/compose/gateway.yaml

FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY portway ./portway
COPY gateway ./gateway
COPY controller ./controller
RUN python -m venv /opt/portway \
    && /opt/portway/bin/pip install --no-cache-dir . \
    && cd / && /opt/portway/bin/python -c \
       "import gateway.compiled as c; assert c.state == 'compiled', c.state; print('hot path:', c.state)"

FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/portway --create-home portway
COPY --from=build /opt/portway /opt/portway
ENV PATH=/opt/portway/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /var/lib/portway
USER 10001:10001
# gateway listener, gateway admin API, controller admin API
EXPOSE 8080 9901 9902
ENTRYPOINT ["portway"]
CMD ["gateway", "--config", "/etc/portway/compose/gateway.yaml"]
