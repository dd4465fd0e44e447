# Sourced, not run. find_python VERSION prints the first CPython VERSION that runs of:
# pyenv's newest VERSION.x (~/.pyenv/versions), `pythonVERSION` on PATH; fails without one.
find_python() {
    local version=$1 candidate
    for candidate in $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$version".* 2>/dev/null | sort -V -r); do
        if "$candidate/bin/python$version" -c 'import sys' 2>/dev/null; then
            echo "$candidate/bin/python$version"
            return
        fi
    done
    if command -v "python$version" >/dev/null 2>&1; then
        command -v "python$version"
        return
    fi
    return 1
}
