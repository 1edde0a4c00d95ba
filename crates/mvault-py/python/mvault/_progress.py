"""The tqdm bar behind ``progress=True`` (none when tqdm is not installed)."""


class _TqdmBar:
    def __init__(self, tqdm, desc):
        self._bar = tqdm(desc=desc, total=0, unit="B", unit_scale=True, unit_divisor=1024)

    def __call__(self, done, total):
        bar = self._bar
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    def close(self):
        self._bar.close()


def tqdm_bar(desc):
    """A callable ``f(done, total)`` drawing a tqdm bar, with ``close()``; None without tqdm."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return _TqdmBar(tqdm, desc)
