#!/bin/sh
# One-shot job of docker-compose.yml (service temporal-namespace, image temporalio/admin-tools): registers
# the namespace the worker uses, once the server is up, unless it exists. Retention: how long closed runs
# (and so `progress` and `rerun` of finished work) are kept.
set -eu

# The server is healthy (compose waits for its port) but may still be starting its services: wait up
# to two minutes, then fail, so that compose restarts the job (restart: on-failure) and the log says why.
attempts=0
until temporal operator cluster health --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1; do
    attempts=$((attempts + 1))
    if [ "$attempts" -ge 60 ]; then
        echo "the Temporal server at $TEMPORAL_ADDRESS did not become healthy within 2 minutes" >&2
        exit 1
    fi
    echo "waiting for the Temporal server at $TEMPORAL_ADDRESS"
    sleep 2
done
if temporal operator namespace describe --namespace "$NAMESPACE" --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1; then
    echo "namespace $NAMESPACE exists"
else
    temporal operator namespace create --namespace "$NAMESPACE" --retention "$RETENTION" --address "$TEMPORAL_ADDRESS"
    echo "namespace $NAMESPACE created (retention $RETENTION)"
fi
