#!/bin/sh
# botocore (s3fs's AWS client, the `s3` extra) ships the API model of every AWS service: about 27 MB of its 29.
# The store only ever talks to S3, and the credential chain to STS (web identity: workload identity on EKS, an
# assumed role), SSO and SSO-OIDC (SSO profiles) and Sign-In (login profiles). Every other service's model is
# removed, which keeps an API-only or tokenizer-only step image within its size goal with S3 on
# (docs/benchmarks.md, "Image sizes"). botocore's own top-level files (endpoints, partitions, retry, defaults)
# stay. install-deps.sh runs it on /opt/venv; tests/integration/test_s3_store.py runs the store on a copy
# pruned by this script against the real S3 server.
#
# Usage: sh prune-botocore.sh SITE_PACKAGES     (no botocore there: nothing to do)
set -eu
KEEP="s3 sts sso sso-oidc signin"
data="$1/botocore/data"
[ -d "$data" ] || exit 0
for service in "$data"/*/; do
    name=$(basename "$service")
    case " $KEEP " in
        *" $name "*) ;;
        *) rm -rf "$service" ;;
    esac
done
