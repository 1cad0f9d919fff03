FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot bot
COPY adapters adapters
COPY storage storage
# The CPU build of torch; for a GPU image, install the CUDA build of torch 2.13.0 first.
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu .
ENV TSUZUKI_DATA_DIR=/data
VOLUME /data
ENTRYPOINT ["tsuzuki"]
CMD ["run"]
