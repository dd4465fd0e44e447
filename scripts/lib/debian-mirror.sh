# Shared by the scripts that fetch from Debian's archive (sourced, not run): the archive
# URL is read from the machine's own apt sources, never written into the repository.
# Callers define `die MESSAGE`.

# Print "URI SUITE" for every enabled `deb` entry in the machine's apt sources,
# one-line (*.list) and deb822 (*.sources) formats alike.
apt_deb_entries() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r "$f" ]] || continue
        # "deb [opts] URI SUITE COMPONENTS..." - drop comments and [opts].
        sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" |
            awk '$1 == "deb" && NF >= 3 { print $2, $3 }'
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -r "$f" ]] || continue
        # Stanzas separated by blank lines; field names are case-insensitive.
        awk '
            function flush(   nu, ns, u, s, i, j) {
                if (types ~ /(^| )deb( |$)/ && tolower(enabled) != "no") {
                    nu = split(uris, u, " "); ns = split(suites, s, " ")
                    for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) print u[i], s[j]
                }
                types = uris = suites = enabled = ""; last = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            /^[ \t]/   { if (last == "uris") uris = uris " " $0; else if (last == "suites") suites = suites " " $0; next }
            {
                key = tolower($0); sub(/:.*/, "", key)
                val = $0; sub(/^[^:]*:[ \t]*/, "", val)
                last = key
                if (key == "types") types = val
                else if (key == "uris") uris = val
                else if (key == "suites") suites = val
                else if (key == "enabled") enabled = val
            }
            END { flush() }
        ' "$f"
    done
}

# The Debian archive URL: the URI serving this release's own codename suite
# (not -security/-updates, nor third-party repos). Never hard-coded.
debian_mirror() {
    if [[ -n "${WARP_CACHE_DEBIAN_MIRROR:-}" ]]; then
        printf '%s\n' "$WARP_CACHE_DEBIAN_MIRROR"; return
    fi
    local codename entries uri
    # shellcheck disable=SC1091  # the machine's own file
    codename="$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")"
    entries="$(apt_deb_entries | sed 's/[[:space:]]\+/ /g')"
    uri="$(awk -v c="$codename" '$2 == c { print $1; exit }' <<<"$entries")"
    if [[ -z "$uri" ]]; then   # e.g. only "stable" or "bookworm-updates" listed
        uri="$(awk -v c="$codename" '$2 ~ "^(" c "|stable)(-updates)?$" && $1 !~ /security/ { print $1; exit }' <<<"$entries")"
    fi
    [[ -n "$uri" ]] || die "no Debian archive found in apt sources (set WARP_CACHE_DEBIAN_MIRROR)"
    printf '%s\n' "${uri%/}"
}
