# The app image: Streamlit + the shipped model, CPU-only torch, run as a non-root user. Healthy means ready
# (/readyz: the model loaded, the database answering with its schema in place), not only alive.
#   docker compose up -d --build      (see DEPLOYMENT.md)
FROM python:3.11-slim

# FORWARDED_ALLOW_IPS empty: uvicorn believes no X-Forwarded-For itself; TRUSTED_PROXIES alone decides (access/clients.py).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MALLOC_ARENA_MAX=2 \
    FORWARDED_ALLOW_IPS=""

WORKDIR /app

# torch/torchvision: the CPU wheels of the versions requirements.txt pins (the default wheels bring GBs of CUDA).
# pgserver (the embedded database for `make run`) is left out: Compose always provides PostgreSQL.
COPY requirements.txt .
RUN grep -E '^(torch|torchvision)==' requirements.txt > /tmp/requirements-torch.txt \
 && grep -v -E '^(torch|torchvision|pgserver)==' requirements.txt > /tmp/requirements-runtime.txt \
 && pip install --index-url https://download.pytorch.org/whl/cpu -r /tmp/requirements-torch.txt \
 && pip install -r /tmp/requirements-runtime.txt \
 && rm /tmp/requirements-torch.txt /tmp/requirements-runtime.txt

RUN groupadd --gid 10001 app \
 && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin app \
 && mkdir -p /app/data /app/models \
 && chown app:app /app/data

# Runtime files only (.dockerignore keeps the rest out of the build context).
COPY .streamlit/ .streamlit/
COPY server.py app.py utils.py db.py ./
COPY config/ config/
COPY access/ access/
COPY inference/ inference/
COPY storage/ storage/
COPY serve/ serve/
COPY views/ views/
COPY components/ components/
COPY models/model.pth models/model.pth

USER 10001:10001
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8501/readyz', timeout=8).status != 200)"]

CMD ["streamlit", "run", "server.py", "--server.port=8501", "--server.address=0.0.0.0"]
