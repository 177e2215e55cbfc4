"""Operations: health, metrics, logging and the Celery signal hooks (connected in OpsConfig.ready)."""
