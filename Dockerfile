# Jiesu application image: one image, three roles.
#   API (default):  python -m api --host 0.0.0.0 --port 8000   (uvicorn api.main:app, api/__main__.py)
#   worker:         python worker.py
#   preparation:    python -m jiesu.ops.cli bootstrap   (one-shot, idempotent)
# docker-compose.yml runs all three from this image with a different `command`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# The log sender's file where the runtime user may write: the default, .data/, would be under
# the root-owned /app, and every staff notice failed under a plain `docker run`.
ENV JIESU_NOTIFY_LOG=/home/jiesu/notifications.log

# Unprivileged runtime user (fixed uid/gid so volume permissions are predictable).
RUN groupadd --system --gid 10001 jiesu \
    && useradd --system --uid 10001 --gid jiesu --home-dir /home/jiesu --create-home jiesu

WORKDIR /app

# Exactly what pyproject.toml packages ([tool.setuptools] packages + py-modules) and the
# readme it declares. tests/, bench/ and the embedded-stack data stay out of the image.
COPY pyproject.toml README.md ./
COPY jiesu/ jiesu/
COPY workflows/ workflows/
COPY activities/ activities/
COPY api/ api/
COPY worker.py ./

# Runtime dependencies only (no [dev] extra). The sources stay in /app, owned by root and
# read-only for the runtime user, so `python worker.py` works from the working directory.
RUN pip install . \
    && rm -rf build ./*.egg-info

USER jiesu

EXPOSE 8000

CMD ["python", "-m", "api", "--host", "0.0.0.0", "--port", "8000"]
