"""The look-ups a resumed import and `medloop store verify`/`gc` rely on, on SQLite and
PostgreSQL."""

from __future__ import annotations

from medloop.store import Database
from medloop.store import repository as repo
from medloop.store.models import RiskModelVersion


def _sha(i: int) -> str:
    return f"{i:064x}"


def test_items_are_found_by_source_image_and_patient(database: Database) -> None:
    with database.session() as s:
        project = repo.create_project(s, name="ct", classes=["a", "b"], n_channels=1)
        other = repo.create_project(s, name="mr", classes=["a", "b"], n_channels=1)
        items = [
            repo.NewItem(
                source_ref=f"dicom:{i}",
                image_sha256=_sha(i),
                dicom_sha256=_sha(100 + i),
                split="train" if i < 2 else "test",
                patient_pseudonym=f"P{i // 2}",
            )
            for i in range(4)
        ]
        repo.add_items(s, project=project, items=items)
        repo.add_items(
            s, project=other, items=[repo.NewItem("dicom:0", _sha(0), "train")]
        )  # the same image in another project
        s.add(
            RiskModelVersion(
                project_id=other.id,
                kind="survival",
                version=1,
                method="cox",
                blob_sha256=_sha(999),
                n_train=10,
            )
        )
        repo.audit(s, actor="t", action="ingest", entity="project", entity_id=project.id,
                   detail={"source": "dicom:F1"})  # fmt: skip
        repo.audit(s, actor="t", action="ingest", entity="project", entity_id=other.id,
                   detail={"source": "dicom:F2"})  # fmt: skip
    with database.session() as s:
        ids = repo.item_ids_by_source(
            s, project_id=project.id, source_refs=["dicom:1", "dicom:3", "dicom:9"]
        )
        assert sorted(ids) == ["dicom:1", "dicom:3"] and len(set(ids.values())) == 2
        twins = repo.items_with_images(s, project_id=project.id, image_sha256s=[_sha(2), _sha(7)])
        assert {sha: item.source_ref for sha, item in twins.items()} == {_sha(2): "dicom:2"}
        assert repo.patient_splits(s, project_id=project.id) == {"P0": "train", "P1": "test"}
        assert repo.audit_details(s, action="ingest", entity="project", entity_id=other.id) == [
            {"source": "dicom:F2"}
        ]
        references = repo.blob_references(s)
    assert len(references) == 4 * 2 + 1 + 1
    assert set(references["sha256"]) == {_sha(i) for i in [*range(4), *range(100, 104), 999]}
    model = references[references["entity"] == "risk_model"].iloc[0]
    assert (model["project"], model["role"], model["sha256"]) == ("mr", "model", _sha(999))
    ct_dicoms = references[(references["project"] == "ct") & (references["role"] == "dicom")]
    assert sorted(ct_dicoms["sha256"]) == [_sha(100 + i) for i in range(4)]
