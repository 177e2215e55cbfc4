"""The projects REST API (CONTRACT.md's REST section): serializers, views and routes."""
