#!/usr/bin/env bash
# Builds the demo/test image from images/demo as dkos-demo:1 and dkos-demo:2
# (the same Dockerfile with DEMO_VERSION=2, so tests can deploy a "new
# version"). A build is skipped when the image's dkos.demo.hash label matches
# the hash of images/demo, so a second run takes well under a second.
set -euo pipefail

cd "$(dirname "$0")/.."
context=images/demo
# No registry is reachable: the image starts FROM scratch with the host's
# static busybox, copied into the context (git-ignored).
busybox=$(command -v busybox || echo /bin/busybox)
if ! cmp -s "$busybox" "$context/busybox"; then
	cp "$busybox" "$context/busybox"
fi

# Hash of every file in the context: names, modes and contents.
hash=$(
	cd "$context"
	find . -type f -printf '%m %p\n' | LC_ALL=C sort
	find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
)
hash=$(sha256sum <<<"$hash" | cut -c1-16)

for version in 1 2; do
	image=dkos-demo:$version
	built=$(docker image inspect -f '{{index .Config.Labels "dkos.demo.hash"}}' "$image" 2>/dev/null || true)
	if [[ $built == "$hash" ]]; then
		echo "images: $image is up to date"
		continue
	fi
	echo "images: building $image"
	start=$SECONDS
	# No buildx on this machine: the legacy builder it is. Its output is
	# shown only when the build fails (it warns that it is deprecated).
	if ! log=$(DOCKER_BUILDKIT=0 docker build \
		--build-arg DEMO_VERSION="$version" --build-arg DEMO_HASH="$hash" \
		-t "$image" "$context" 2>&1); then
		echo "$log" >&2
		echo "images: building $image failed" >&2
		exit 1
	fi
	echo "images: built $image in $((SECONDS - start)) s"
done
