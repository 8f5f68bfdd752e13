#!/usr/bin/env bash
# The main job: set up and build everything (scripts/setup.sh), then run `uname -a` in a fresh
# VM of the bundled guest with `cove run`, through cove-agent over vsock.
# Runs on this host when its KVM is hardware-backed, otherwise in the nested test host.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec guest/testhost.sh -- cove run --cpus 2 --memory 512M -- uname -a
