#!/bin/sh
# One-shot job of docker-compose.yml (service temporal-namespace, image temporalio/admin-tools): registers
# the namespace the worker uses, once the server is up, unless it exists. Retention: how long closed runs
# (and so `progress` and `rerun` of finished work) are kept.
set -eu

until temporal operator cluster health --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1; do
    echo "waiting for the Temporal server at $TEMPORAL_ADDRESS"
    sleep 2
done
if temporal operator namespace describe --namespace "$NAMESPACE" --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1; then
    echo "namespace $NAMESPACE exists"
else
    temporal operator namespace create --namespace "$NAMESPACE" --retention "$RETENTION" --address "$TEMPORAL_ADDRESS"
    echo "namespace $NAMESPACE created (retention $RETENTION)"
fi
