# One image for every FERVI service; the command picks the stage (see docker-compose.yml).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY fervi fervi
COPY ingest ingest
COPY workers workers
COPY tracker tracker
COPY offline offline
COPY dashboard dashboard
COPY training training
COPY models models
COPY bench bench
RUN pip install --no-cache-dir .
ENV FERVI_METRICS_HOST=0.0.0.0 FERVI_METRICS_PORT=9100
EXPOSE 9100
ENTRYPOINT ["fervi"]
