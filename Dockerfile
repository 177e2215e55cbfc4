# One image for every role (web, workers, beat, flower); compose.yaml picks the command.
FROM python:3.11-slim

# espeak-ng speaks the narration (without it the audio stage falls back to a tone).
RUN apt-get update && apt-get install -y --no-install-recommends espeak-ng \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 VAR_DIR=/app/var
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# Static files are built into the image (whitenoise serves them); the key is a build-time placeholder only.
RUN DJANGO_DEBUG=0 DJANGO_SECRET_KEY=collectstatic-only PROMETHEUS_MULTIPROC_DIR=off \
    python manage.py collectstatic --noinput -v 0

RUN useradd --create-home --uid 1000 app && mkdir -p /srv/media /srv/metrics && chown -R app /app/var /srv
USER app
EXPOSE 8000
CMD ["python", "-m", "patches.daphne", "-b", "0.0.0.0", "-p", "8000", "config.asgi:application"]
