#!/usr/bin/env bash
# Query images/images.tsv, the project's one image list.
#
#   images/list.sh names [USED]     every image, or those whose `used` column has USED (e2e, kind, node)
#   images/list.sh field NAME COL   one column of an image: kind, extras (space-separated), model, used
#
# Exit 2 on an unknown image or column, so a caller's typo stops its build.
set -euo pipefail

LIST="${IMAGE_LIST:-$(dirname "${BASH_SOURCE[0]}")/images.tsv}"

rows() { grep -v '^[[:space:]]*\(#\|$\)' "$LIST"; }

case "${1:-}" in
    names)
        rows | awk -v used="${2:-}" 'used == "" || ("," $5 ",") ~ ("," used ",") { print $1 }'
        ;;
    field)
        name=${2:?usage: $0 field NAME COLUMN} column=${3:?usage: $0 field NAME COLUMN}
        case $column in
            kind) index=2 ;; extras) index=3 ;; model) index=4 ;; used) index=5 ;;
            *) echo "unknown column $column (kind, extras, model, used)" >&2; exit 2 ;;
        esac
        value=$(rows | awk -v name="$name" -v i="$index" '$1 == name { print $i; found = 1 } END { exit !found }') \
            || { echo "unknown image $name (images/images.tsv)" >&2; exit 2; }
        [[ $value == - ]] && value=""
        [[ $column == extras || $column == used ]] && value=${value//,/ }
        echo "$value"
        ;;
    *)
        echo "usage: $0 names [USED] | field NAME COLUMN" >&2
        exit 2
        ;;
esac
