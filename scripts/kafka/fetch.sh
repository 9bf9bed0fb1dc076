#!/usr/bin/env bash
# Resolves Apache Kafka (broker + tools) and a log binding from Maven Central into scripts/kafka/libs.
# Idempotent: does nothing when the jars are already there.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
HERE="$ROOT/scripts/kafka"
LIBS="$HERE/libs"
if ls "$LIBS"/kafka_2.13-*.jar >/dev/null 2>&1 && [ -f "$LIBS/.complete" ]; then
  exit 0
fi
command -v mvn >/dev/null || { log "mvn not found: install Maven (Debian: maven) and Java 17+"; exit 1; }
log "resolving Apache Kafka jars from Maven Central (first run only)"
rm -rf "$LIBS.tmp"
mvn -B -q -f "$HERE/pom.xml" \
  org.apache.maven.plugins:maven-dependency-plugin:3.11.0:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$LIBS.tmp"
rm -rf "$LIBS"; mv "$LIBS.tmp" "$LIBS"; touch "$LIBS/.complete"
log "kafka jars in $LIBS ($(ls "$LIBS" | wc -l) files)"
