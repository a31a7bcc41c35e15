#!/usr/bin/env bash
# Compile and run the pure-Kotlin core's JUnit tests without Gradle or Google's Maven.
# Installs what is missing, quietly and idempotently: the Kotlin compiler from npm (package
# kotlin-compiler, into $ANDROID_DEMO_TOOLS, default ~/.cache/android-demo-tools) and Debian's junit4
# (which brings hamcrest). Needs a JDK (17+). Prints JUnit's result line, e.g. "OK (18 tests)".
# GOLDEN_DIR=dir runs GoldenTest on other goldens than core/src/test/resources/golden (e.g. ones written
# from an untrained model, which must fail).
# Where the Android SDK and Google's Maven are present, `./gradlew :core:test` runs the same tests.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
KOTLIN_VERSION="2.4.20"  # keep equal to gradle/libs.versions.toml [versions] kotlin
tools="${ANDROID_DEMO_TOOLS:-$HOME/.cache/android-demo-tools}"
kotlinc="$tools/node_modules/kotlin-compiler/bin/kotlinc"
lib="$tools/node_modules/kotlin-compiler/lib"

if [[ ! -x "$kotlinc" ]] || ! grep -qx "$KOTLIN_VERSION" "$tools/node_modules/kotlin-compiler/build.txt" 2>/dev/null; then
  command -v npm >/dev/null || { echo "test-core.sh: npm is needed to install kotlin-compiler (apt-get install npm)" >&2; exit 1; }
  mkdir -p "$tools"
  npm install --prefix "$tools" --no-audit --no-fund --loglevel=error "kotlin-compiler@$KOTLIN_VERSION" >/dev/null \
    || { echo "test-core.sh: npm could not install kotlin-compiler@$KOTLIN_VERSION" >&2; exit 1; }
fi
command -v java >/dev/null || { echo "test-core.sh: a JDK (17+) is needed (apt-get install openjdk-17-jdk-headless)" >&2; exit 1; }

jar_of() { for j in "$@"; do [[ -f "/usr/share/java/$j" ]] && { echo "/usr/share/java/$j"; return 0; }; done; return 1; }
if ! jar_of junit4.jar >/dev/null || ! jar_of hamcrest.jar hamcrest-core.jar hamcrest-all.jar >/dev/null; then
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  log="$(mktemp)"
  if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq junit4 libhamcrest-java; } >"$log" 2>&1; then
    cat "$log" >&2; echo "test-core.sh: could not install junit4 with apt-get" >&2; exit 1
  fi
  rm -f "$log"
fi
junit="$(jar_of junit4.jar)"
hamcrest="$(jar_of hamcrest.jar hamcrest-core.jar hamcrest-all.jar)"

build="$here/core/build/test-core"
rm -rf "$build" && mkdir -p "$build/classes"
src="$here/core/src"
mapfile -t sources < <(find "$src/main/kotlin" "$src/test/kotlin" -name '*.kt' | sort)
if ! "$kotlinc" -nowarn -jvm-target 17 -cp "$junit:$hamcrest" -d "$build/classes" "${sources[@]}" >"$build/kotlinc.log" 2>&1; then
  grep -v '^OpenJDK 64-Bit Server VM warning' "$build/kotlinc.log" >&2; echo "test-core.sh: compilation failed" >&2; exit 1
fi
# A test class per *Test.kt file, named from its package and file name.
mapfile -t classes < <(find "$src/test/kotlin" -name '*Test.kt' | sort | while read -r f; do
  pkg=$(sed -n 's/^package \(.*\)$/\1/p' "$f" | head -1); echo "$pkg.$(basename "$f" .kt)"; done)
golden=(); [[ -n "${GOLDEN_DIR:-}" ]] && golden=("-Dgolden.dir=$(cd "$GOLDEN_DIR" && pwd)")
java "${golden[@]}" -cp "$build/classes:$src/test/resources:$lib/kotlin-stdlib.jar:$junit:$hamcrest" org.junit.runner.JUnitCore "${classes[@]}" \
  | grep -v '^JUnit version\|^\.*$\|^Time: '
