"""A MONAI datalist as the dataset: no project code for the usual NIfTI layout."""

from pathlib import Path

from torch.utils.data import Dataset


class Datalist(Dataset):
    """The records of a MONAI datalist JSON (`{"training": [{"image": path, "label": path}, ...]}`,
    the Medical Segmentation Decathlon's `dataset.json`), as `monai.data.load_decathlon_datalist`
    reads it: relative paths are relative to `root` (default: the file's folder).

    Items are the records (mappings of paths); `data.transforms` loads them (`LoadImaged`, ...).

    Args:
        path: the datalist JSON.
        key: which list of the file (`training`, `validation`, `test`).
        root: the folder relative paths start from.
        labels: names of the label classes (evaluators' per-label keys), when the file has no `labels`.
    """

    def __init__(self, path: str, key: str = "training", root: str | None = None, labels=None):
        import json

        from monai.data import load_decathlon_datalist

        path = Path(path)  # pyright: ignore[reportAssignmentType]
        self.records = load_decathlon_datalist(path, data_list_key=key, base_dir=root or path.parent)
        if labels is None:  # the decathlon's "labels": {"0": "background", "1": "liver", ...}
            named = json.loads(path.read_text()).get("labels")
            labels = [named[k] for k in sorted(named, key=int)] if isinstance(named, dict) else None
        self.labels = list(labels) if labels is not None else None

    def __len__(self):
        return len(self.records)

    def __getitem__(self, index):
        return dict(self.records[index])
