"""The Android demo app's folder (`android_demo/`): where its parts are, and what its Gradle build declares.

Read from the files themselves (`app/build.gradle.kts`), so the checks that run here without Gradle use the
same package name, SDK levels and uncompressed extensions that Android Studio builds with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tfcompress.errors import TfcompressError

__all__ = ["ASSET_LABELS", "ASSET_MODEL", "ASSET_SIDECAR", "AppProject", "merged_manifest", "read_app_project"]

ASSET_MODEL = "model.tflite"
ASSET_SIDECAR = "model.meta.json"
ASSET_LABELS = "labels.txt"
"""The names `tfcompress android-export` writes and the app's `ModelAssets` reads."""

_NOT_THE_APP_HINT = "pass the android_demo/ folder of the tfcompress repository (the one holding app/src/main)"

# app/build.gradle.kts setting -> the regex that reads it (Kotlin DSL, one assignment per line).
_GRADLE_FIELDS: dict[str, str] = {
    "namespace": r'^\s*namespace\s*=\s*"([\w.]+)"',
    "min_sdk": r"^\s*minSdk\s*=\s*(\d+)",
    "target_sdk": r"^\s*targetSdk\s*=\s*(\d+)",
    "version_code": r"^\s*versionCode\s*=\s*(\d+)",
    "version_name": r'^\s*versionName\s*=\s*"([^"]+)"',
}


@dataclass(frozen=True)
class AppProject:
    """The demo app's folder and the settings of its `app/build.gradle.kts`."""

    root: Path
    namespace: str
    min_sdk: int
    target_sdk: int
    version_code: int
    version_name: str
    no_compress: tuple[str, ...]

    @property
    def main(self) -> Path:
        return self.root / "app" / "src" / "main"

    @property
    def manifest(self) -> Path:
        return self.main / "AndroidManifest.xml"

    @property
    def res(self) -> Path:
        return self.main / "res"

    @property
    def assets(self) -> Path:
        return self.main / "assets"

    @property
    def app_sources(self) -> Path:
        return self.main / "java"

    @property
    def core_main(self) -> Path:
        return self.root / "core" / "src" / "main" / "kotlin"

    @property
    def core_test(self) -> Path:
        return self.root / "core" / "src" / "test" / "kotlin"

    @property
    def stubs(self) -> Path:
        return self.root / "stubs" / "src"


def read_app_project(root: str | Path) -> AppProject:
    """The app at `root` (the folder with `app/`, `core/`, `settings.gradle.kts`).

    Raises:
        TfcompressError: `root` is not the demo app, or its app/build.gradle.kts lacks a setting read here.
    """
    root = Path(root).expanduser()
    gradle = root / "app" / "build.gradle.kts"
    manifest = root / "app" / "src" / "main" / "AndroidManifest.xml"
    if not root.is_dir():
        raise TfcompressError(f"--app {root} is not a folder", _NOT_THE_APP_HINT)
    if not manifest.is_file() or not gradle.is_file():
        raise TfcompressError(
            f"--app {root} is not the Android demo app (no app/src/main/AndroidManifest.xml and app/build.gradle.kts)",
            _NOT_THE_APP_HINT,
        )
    text = gradle.read_text(encoding="utf-8")
    values: dict[str, str] = {}
    for field, pattern in _GRADLE_FIELDS.items():
        match = re.search(pattern, text, re.MULTILINE)
        if match is None:
            raise TfcompressError(f"{gradle} sets no {field}", "restore it from the tfcompress repository")
        values[field] = match.group(1)
    no_compress = tuple(re.findall(r'noCompress\s*\+=\s*"(\w+)"', text))
    return AppProject(
        root=root,
        namespace=values["namespace"],
        min_sdk=int(values["min_sdk"]),
        target_sdk=int(values["target_sdk"]),
        version_code=int(values["version_code"]),
        version_name=values["version_name"],
        no_compress=no_compress,
    )


def merged_manifest(project: AppProject, manifest_text: str | None = None) -> str:
    """The manifest with what Android Studio's manifest merger adds from the Gradle build.

    The package (from `namespace`), the version code and name, and `<uses-sdk>`: `aapt2 link` needs them,
    and the source manifest leaves them to Gradle. `manifest_text` replaces the file's own text (a test's
    deliberately broken copy).
    """
    text = manifest_text if manifest_text is not None else project.manifest.read_text(encoding="utf-8")
    opening = re.search(r"<manifest\b[^>]*>", text)
    if opening is None:
        raise TfcompressError(f"{project.manifest} has no <manifest> element", "restore it from the repository")
    tag = opening.group(0)
    attributes = (
        f' package="{project.namespace}" android:versionCode="{project.version_code}"'
        f' android:versionName="{project.version_name}"'
    )
    uses_sdk = (
        f'\n    <uses-sdk android:minSdkVersion="{project.min_sdk}" '
        f'android:targetSdkVersion="{project.target_sdk}" />'
    )
    return text[: opening.start()] + tag[:-1] + attributes + ">" + uses_sdk + text[opening.end():]
