# shellcheck shell=bash
# nomad-rotator: where the documents may write. Included in prepare.sh and install.sh when the
# documents are built (the agent runs one self-contained script). A directory is safe to write in
# when it and every ancestor up to / are real directories (no symlink), owned by root and writable by
# nobody else: then no other user can swap a component for a link between our check and our write.

# Succeeds when $1 is a real directory owned by root with none of the mode bits in $2 (default: no
# write for group or others; 077 for a directory that holds keys).
is_safe_dir() {
  local dir=$1 mask=${2:-022} facts
  [[ ! -L "$dir" && -d "$dir" ]] || return 1
  facts=$(stat -c '%u %a' -- "$dir") || return 1
  [[ "${facts%% *}" == 0 ]] || return 1
  (((8#${facts##* } & 8#$mask) == 0))
}

# Succeeds when $1 and every ancestor of it are safe directories.
is_safe_path() {
  local dir=$1
  while :; do
    is_safe_dir "$dir" || return 1
    [[ "$dir" == / ]] && return 0
    dir=$(dirname -- "$dir")
  done
}

# Succeeds when $1 is a safe path, or does not exist yet and its nearest existing ancestor is one.
may_create_dir() {
  local dir=$1
  while [[ ! -e "$dir" && ! -L "$dir" ]]; do dir=$(dirname -- "$dir"); done
  is_safe_path "$dir"
}

# Creates $1 and each missing ancestor one by one (0755: the certificate directory stays traversable
# for an agent that does not run as root), never into an unsafe component. Without -p, a component
# that appears meanwhile fails the mkdir instead of being used.
ensure_dir() {
  local dir=$1
  if [[ -e "$dir" || -L "$dir" ]]; then
    is_safe_path "$dir"
    return
  fi
  ensure_dir "$(dirname -- "$dir")" || return 1
  mkdir -m 0755 -- "$dir"
}

# A new empty 0700 directory beside $1 under a random name nobody could have prepared (mktemp -d
# creates it with O_EXCL semantics); printed for the caller, who renames it onto $1 when complete.
fresh_dir() {
  mktemp -d -- "$1.XXXXXXXX"
}

# Puts the complete directory $1 in place of $2. The caller has removed any old $2; rename(2) then
# fails, rather than follows, if something (a link, a non-empty directory) took the name meanwhile.
put_in_place() {
  mv -T -- "$1" "$2"
}

# Removes what an interrupted run left beside $1 (its fresh directories); links are left alone.
remove_leftovers() {
  local leftover
  for leftover in "$1".????????; do
    [[ -d "$leftover" && ! -L "$leftover" ]] && rm -rf -- "$leftover"
  done
  return 0
}
