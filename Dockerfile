FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ticker ./ticker
COPY web ./web
RUN pip install --no-cache-dir .
USER nobody
EXPOSE 8000 8001
CMD ["ticker", "serve", "--host", "0.0.0.0", "--hub-host", "0.0.0.0"]
