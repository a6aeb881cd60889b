#!/bin/sh
# Build-time only: a shallow checkout of one git commit, verified.
#   fetch-repo URL DEST COMMIT [TAG]
# COMMIT is a full 40-hex commit id. With TAG, the tag is fetched (so `git describe` works)
# and must point at COMMIT; without it, COMMIT itself is fetched. Anything else fails the build.
# COMMIT "-" with a TAG trusts the tag (used only where the tag's commit id was not known when
# the pin was written; the build log shows the commit to pin).
# The same file is in every runtimes/*/ build context (tests/test_runtime_images.py checks it).
set -eu

if [ "$#" -lt 3 ] || [ "$#" -gt 4 ]; then
    echo "usage: fetch-repo URL DEST COMMIT [TAG]" >&2
    exit 2
fi
url=$1
dest=$2
commit=$3
tag=${4:-}

if [ "$commit" = "-" ] && [ -n "$tag" ]; then
    :
elif [ "${#commit}" -ne 40 ] || [ -n "$(printf '%s' "$commit" | tr -d 0-9a-f)" ]; then
    echo "fetch-repo: '$commit' is not a full 40-hex commit id" >&2
    exit 2
fi

git init -q "$dest"
git -C "$dest" remote add origin "$url"
if [ -n "$tag" ]; then
    git -C "$dest" fetch -q --depth 1 origin "refs/tags/$tag:refs/tags/$tag"
    git -C "$dest" -c advice.detachedHead=false checkout -q "refs/tags/$tag"
else
    git -C "$dest" fetch -q --depth 1 origin "$commit"
    git -C "$dest" -c advice.detachedHead=false checkout -q FETCH_HEAD
fi
actual=$(git -C "$dest" rev-parse HEAD)
echo "fetch-repo: $url ${tag:-$commit} -> $actual"
if [ "$commit" != "-" ] && [ "$actual" != "$commit" ]; then
    echo "fetch-repo: $url ${tag:-$commit} is $actual, expected $commit" >&2
    exit 1
fi
