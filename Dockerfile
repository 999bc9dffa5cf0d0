# The bigseg image: one image for the client (`bigseg score ...` in a CronJob), the Dask
# scheduler and the workers, so that all three run the same code and library versions.
#   docker build -t registry.example.com/bigseg:0.1.0 .      (the tag: bigseg's version)
# The base is pinned to a patch release: the Python that runs bigseg changes only here.
FROM python:3.11.17-slim-bookworm

# Only what deploy/install.sh reads: the locks, the package metadata and the sources.
COPY pyproject.toml README.md requirements.lock requirements-image.lock /tmp/bigseg-src/
COPY deploy/install.sh /tmp/bigseg-src/deploy/install.sh
COPY bigseg /tmp/bigseg-src/bigseg

# Installed as root into /opt/bigseg/venv, so the user that runs it cannot change it; no uv
# cache is kept in the layer.
RUN UV_NO_CACHE=1 /tmp/bigseg-src/deploy/install.sh /opt/bigseg/venv \
    && rm -rf /tmp/bigseg-src \
    && groupadd --gid 10001 bigseg \
    && useradd --no-log-init --create-home --uid 10001 --gid 10001 bigseg

ENV PATH=/opt/bigseg/venv/bin:$PATH \
    PYTHONUNBUFFERED=1

# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /home/bigseg

# No ENTRYPOINT: the Dask operator gives the scheduler and worker containers only args
# (`dask scheduler ...`, `dask worker ...`), which then run as the command; a CronJob gives
# `bigseg ...`. Without arguments the image prints the CLI's help.
CMD ["bigseg", "--help"]
