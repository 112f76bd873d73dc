#!/usr/bin/env bash
# Query images/images.tsv, the project's one image list.
#
#   images/list.sh names [USED]       every image, or those whose `used` column has USED (e2e, kind, node)
#   images/list.sh field NAME COL     one column of an image: kind, extras (space-separated), model, used
#   images/list.sh export-args NAME   the `uv export` arguments of its dependency set, one per line: its extras
#                                     and what it leaves out (images/build.sh and the venv test use them)
#
# Exit 2 on an unknown image or column, so a caller's typo stops its build.
set -euo pipefail

LIST="${IMAGE_LIST:-$(dirname "${BASH_SOURCE[0]}")/images.tsv}"

rows() { grep -v '^[[:space:]]*\(#\|$\)' "$LIST"; }

field() {
    local name=$1 column=$2 index value
    case $column in
        kind) index=2 ;; extras) index=3 ;; model) index=4 ;; used) index=5 ;;
        *) echo "unknown column $column (kind, extras, model, used)" >&2; exit 2 ;;
    esac
    value=$(rows | awk -v name="$name" -v i="$index" '$1 == name { print $i; found = 1 } END { exit !found }') \
        || { echo "unknown image $name (images/images.tsv)" >&2; exit 2; }
    [[ $value == - ]] && value=""
    [[ $column == extras || $column == used ]] && value=${value//,/ }
    echo "$value"
}

case "${1:-}" in
    names)
        rows | awk -v used="${2:-}" 'used == "" || ("," $5 ",") ~ ("," used ",") { print $1 }'
        ;;
    field)
        field "${2:?usage: $0 field NAME COLUMN}" "${3:?usage: $0 field NAME COLUMN}"
        ;;
    export-args)
        name=${2:?usage: $0 export-args NAME}
        for extra in $(field "$name" extras); do echo "--extra=$extra"; done
        # tokenizers depends on huggingface-hub (with hf-xet and PyYAML, ≈21 MB) for from_pretrained; the images
        # load tokenizer.json with Tokenizer.from_file, which never imports it. The model server's transformers does.
        [[ $name == model-server ]] || echo "--prune=huggingface-hub"
        ;;
    *)
        echo "usage: $0 names [USED] | field NAME COLUMN | export-args NAME" >&2
        exit 2
        ;;
esac
