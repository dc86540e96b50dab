#!/usr/bin/env bash
# Installs what the Android checks (tests/test_android_*.py) need, only what is missing, and prints where it is:
#   apt: aapt (aapt2), android-framework-res (framework-res.apk, API 29), default-jdk-headless (java, javac)
#   npm: kotlin-compiler (kotlinc), into $TFCOMPRESS_ANDROID_TOOLS/kotlinc (default /opt/tfcompress-android)
# Run it again at will: a second run installs nothing. The tests find the tools at these paths
# (tfcompress/android/toolchain.py); with TFCOMPRESS_REQUIRE_ANDROID_TOOLS=1 a missing one fails them.
# Nothing here builds an APK: that needs Google's Maven (Android Studio, docs/android.md).
set -euo pipefail

PREFIX="${TFCOMPRESS_ANDROID_TOOLS:-/opt/tfcompress-android}"
KOTLIN_VERSION="2.1.0"  # the app's Kotlin (android_demo/gradle/libs.versions.toml)
KOTLIN_HOME="$PREFIX/kotlinc/node_modules/kotlin-compiler"

missing=()
for pkg in aapt android-framework-res default-jdk-headless; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "android_setup: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

installed=""
if [ -f "$KOTLIN_HOME/package.json" ]; then
  installed="$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$KOTLIN_HOME/package.json" | head -n 1)"
fi
if [ "$installed" != "$KOTLIN_VERSION" ] || [ ! -x "$KOTLIN_HOME/bin/kotlinc" ]; then
  echo "android_setup: npm install kotlin-compiler@$KOTLIN_VERSION into $PREFIX/kotlinc"
  mkdir -p "$PREFIX/kotlinc"
  npm install --prefix "$PREFIX/kotlinc" --no-audit --no-fund --loglevel=error "kotlin-compiler@$KOTLIN_VERSION" >/dev/null
fi

echo "kotlinc=$KOTLIN_HOME/bin/kotlinc"
echo "kotlin-stdlib=$KOTLIN_HOME/lib/kotlin-stdlib.jar"
echo "java=$(command -v java)"
echo "javac=$(command -v javac)"
echo "aapt2=$(command -v aapt2)"
echo "framework-res=/usr/share/android-framework-res/framework-res.apk"
