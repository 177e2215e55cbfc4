"""The REST API's shared DRF glue, one concept per module (settings.REST_FRAMEWORK names them)."""
