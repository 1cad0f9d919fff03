FROM python:3.11-slim
# Where torch comes from. The default is the CPU build of torch 2.13.0 (pinned in
# pyproject.toml), so a plain build pulls no gigabytes of CUDA wheels. For a GPU image
# (the gpu-worker in docker-compose.yml), build from a CUDA index instead, e.g.
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 -t tsuzuki:latest .
# or `TORCH_INDEX=https://download.pytorch.org/whl/cu128 docker compose build`. Pick the
# CUDA version your host's NVIDIA driver supports and that has a 2.13.0 build. The CUDA
# wheels carry their own CUDA libraries: the host needs only the driver and the NVIDIA
# container toolkit. A CUDA image also runs on CPU-only nodes; it is just larger.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot bot
COPY adapters adapters
COPY storage storage
# The `ray` extra: Ray (Serve) for TSUZUKI_ENGINE=ray and for the Ray nodes.
RUN pip install --no-cache-dir --extra-index-url "${TORCH_INDEX}" ".[ray]"
# Everything runs as an unprivileged user that owns only /data (a new named volume
# takes the folder's owner from the image).
RUN useradd --create-home --uid 10001 tsuzuki && mkdir -p /data && chown tsuzuki:tsuzuki /data
USER tsuzuki
ENV TSUZUKI_DATA_DIR=/data
VOLUME /data
# No ENTRYPOINT: the same image runs the bot (this default command) or a Ray node
# (`ray start ...`, the `command` of the Ray services in docker-compose.yml).
CMD ["tsuzuki", "run"]
