#!/bin/sh
# Ensure the models (instant when the cache volume already holds them), then exec the app.
set -e
exec mvault run -- "$@"
