# The loop's image: `make loop` (python train.py --retrain-if-needed) as a Kubernetes CronJob
# (deploy/kubernetes/components/loop). The app's image plus the training code and the training packages that
# requirements-dev.txt pins (tqdm, matplotlib, MLflow); it serves nothing, and the app's image stays lean.
#   docker build -t mnist-digit-classifier .
#   docker build -f deploy/training.Dockerfile --build-arg APP_IMAGE=mnist-digit-classifier -t mnist-loop .
ARG APP_IMAGE=mnist-digit-classifier
# hadolint ignore=DL3006
FROM ${APP_IMAGE}
WORKDIR /app

USER 0
COPY requirements-dev.txt /tmp/requirements-dev.txt
RUN grep -E '^(tqdm|matplotlib|mlflow)==' /tmp/requirements-dev.txt > /tmp/requirements-train.txt \
 && pip install --no-cache-dir -r /tmp/requirements-train.txt \
 && rm /tmp/requirements-dev.txt /tmp/requirements-train.txt
COPY train.py ./
COPY training/ training/

USER 10001:10001
CMD ["python", "train.py", "--retrain-if-needed"]
