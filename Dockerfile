# telltale worker image: one image for every telltale command (worker, monitor, migrate, replay…).
#
#   docker build -t telltale .
#   docker run --rm telltale --help
#
# The same image runs `telltale worker` (default), `telltale monitor` and `telltale migrate`;
# docker-compose.yml picks the command per service.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # open_clip downloads pretrained weights through huggingface-hub on first use; compose
    # mounts a named volume here so they are fetched once, not on every container start.
    HF_HOME=/cache

WORKDIR /src

# CPU-only torch first, from the PyTorch CPU index: the PyPI wheels pull several GB of CUDA
# packages. Versions match constraints.txt, so the project install below keeps these wheels.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 torchvision==0.28.0

# The project itself, with the same pins CI uses. Only what the build needs is copied
# (there is no .dockerignore; copying the whole tree would drag in .venv and .git).
COPY pyproject.toml constraints.txt README.md ./
COPY telltale/ telltale/
COPY signals/ signals/
COPY streams/ streams/
COPY storage/ storage/
COPY alerts/ alerts/
COPY dashboards/ dashboards/
RUN pip install -c constraints.txt . \
    && rm -rf /src

# Run as an unprivileged user. /data is the working directory (faust keeps its local state
# in ./<app id>-data); /cache holds the model weights. Both are created here, owned by the
# user, so named volumes mounted on them inherit that ownership.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin telltale \
    && mkdir -p /data /cache \
    && chown telltale:telltale /data /cache
USER telltale
WORKDIR /data

ENTRYPOINT ["telltale"]
CMD ["worker"]
