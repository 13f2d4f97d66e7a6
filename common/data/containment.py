"""Keep the files a datalist names inside its dataset folder.

A datalist is data, often downloaded or shared: ``../../etc/passwd``, an absolute path or a symlink must not
make a bundle read (or, through a cache, copy) files outside the dataset folder the user pointed it at. Paths are
resolved the way the operating system will open them, symlinks followed; a link is fine when its target stays
inside. Each parent folder is resolved once, so checking 112,120 images costs one ``lstat`` per file.
"""

from __future__ import annotations

import os

__all__ = ["DatasetDirGuard"]


class DatasetDirGuard:
    """Resolve paths and tell whether they stay inside ``dataset_dir`` (itself resolved, symlinks followed).

    Args:
        dataset_dir: the folder the paths must stay in.

    Example:
        >>> guard = DatasetDirGuard("/data/nih")
        >>> guard.outside("/data/nih/../secret.png")
        '/data/secret.png'
        >>> guard.outside("/data/nih/images/a.png") is None
        True
    """

    def __init__(self, dataset_dir: str | os.PathLike) -> None:
        self.root = os.path.realpath(dataset_dir)
        self._prefix = self.root if self.root.endswith(os.sep) else self.root + os.sep
        self._folders: dict[str, str] = {}

    def resolve(self, path: str | os.PathLike) -> str:
        """The real path ``path`` opens (it need not exist; missing parts are kept as written)."""
        text = os.fspath(path)
        folder, name = os.path.split(text)
        if name in ("", ".", ".."):
            return os.path.realpath(text)
        real_folder = self._folders.get(folder)
        if real_folder is None:
            real_folder = self._folders[folder] = os.path.realpath(folder or ".")
        joined = os.path.join(real_folder, name)
        return os.path.realpath(joined) if os.path.islink(joined) else joined

    def outside(self, path: str | os.PathLike) -> str | None:
        """The resolved path when ``path`` leads outside the dataset folder, else None."""
        resolved = self.resolve(path)
        return None if resolved == self.root or resolved.startswith(self._prefix) else resolved
