"""DICOM de-identification: the PS3.15 Basic Application Level Confidentiality Profile.

`deidentify` returns a copy of a dataset with the identifying attributes of PS3.15
Table E.1-1 removed (X), emptied (Z) or replaced by dummies (D); every instance UID
replaced (U) by a keyed hash, so the same UID under the same key always maps to the
same ``2.25.<int>`` UID and references between files stay intact; all private tags,
curves and overlays dropped; and the patient replaced by a keyed pseudonym. Pixel data
is never touched (burned-in text is *not* cleaned: the Clean Pixel Data option is not
applied).

Where the table leaves a choice (X/Z, Z/D, X/Z/D) the empty value Z is used; X/D
becomes X. Beyond the table, as a safety net, any remaining person name (PN), date
(DA), date-time (DT) or time (TM) is emptied and public tags unknown to pydicom's
dictionary are removed. Dates are removed, not shifted, so the output says
``LongitudinalTemporalInformationModified = REMOVED``.

>>> pseudonymize("12345", key=b"secret") == pseudonymize("12345", key=b"secret")
True
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import io
import logging
from pathlib import Path
from typing import Any, Literal

import pydicom
from pydicom.datadict import dictionary_has_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    UID_dictionary,
)

from medloop.exceptions import IngestError, InvalidInputError

logger = logging.getLogger(__name__)

Action = Literal["X", "Z", "D", "U"]

#: Value of (0012,0063) De-identification Method written into every output.
DEIDENTIFICATION_METHOD = "DICOM PS3.15 E.1 Basic Profile; keyed pseudonyms (medloop)"
#: Code of the Basic Application Level Confidentiality Profile (PS3.16 CID 7050).
BASIC_PROFILE_CODE = "113100"

# PS3.15 Table E.1-1, Basic Profile column (compound codes resolved as the module
# docstring says). X: remove, Z: empty, D: dummy value, U: keyed UID.
_Z = """
AccessionNumber AcquisitionContextSequence AcquisitionDate AcquisitionDateTime
AcquisitionTime BarcodeValue CalibrationDateTime ClinicalTrialCoordinatingCenterName
ClinicalTrialProtocolName ClinicalTrialSiteID ClinicalTrialSiteName
ClinicalTrialTimePointID ConsultingPhysicianName ContentCreatorName ContentDate
ContentTime ContrastBolusAgent DeviceSerialNumber FillerOrderNumberImagingServiceRequest
InstanceCreationTime InstitutionCodeSequence InstitutionName
IssuerOfTheContainerIdentifierSequence IssuerOfTheSpecimenIdentifierSequence LabelText
OperatorsName ParticipationDateTime PatientBirthDate PatientID PatientName PatientSex
PatientSexNeutered PlacerOrderNumberImagingServiceRequest
ReferencedPerformedProcedureStepSequence ReferencedStudySequence ReferringPhysicianName
RequestedProcedureDescription ReviewDate ReviewerName ReviewTime ROIInterpreter
SourceSerialNumber StationName StructureSetDate StructureSetTime StudyDate StudyID
StudyTime TreatmentMachineName VerifyingObserverIdentificationCodeSequence
"""
_D = """
ClinicalTrialProtocolEthicsCommitteeName ClinicalTrialProtocolID
ClinicalTrialSponsorName ClinicalTrialSubjectID ClinicalTrialSubjectReadingID
ContainerIdentifier Date DateTime DecayCorrectionDateTime FrameAcquisitionDateTime
FrameReferenceDateTime PersonName RTPlanLabel SourceStrengthReferenceDate
SourceStrengthReferenceTime SpecimenIdentifier StructureSetLabel Time
TreatmentControlPointDate TreatmentControlPointTime VerifyingObserverName
VerifyingObserverSequence VerifyingOrganization XRayDetectorID XRaySourceID
"""
_X = """
AcquisitionComments AcquisitionDeviceProcessingDescription AcquisitionProtocolDescription
ActualHumanPerformersSequence AdditionalPatientHistory AdmissionID AdmittingDate
AdmittingDiagnosesCodeSequence AdmittingDiagnosesDescription AdmittingTime
AffectedSOPInstanceUID Allergies Arbitrary AuthorObserverSequence BeamDescription
BranchOfService CameraOwnerName CassetteID ClinicalTrialProtocolEthicsCommitteeApprovalNumber
ClinicalTrialSeriesDescription ClinicalTrialSeriesID ClinicalTrialTimePointDescription
CommentsOnRadiationDose CommentsOnThePerformedProcedureStep
ConfidentialityConstraintOnPatientDataDescription ConsultingPhysicianIdentificationSequence
ContentCreatorIdentificationCodeSequence ContrastBolusStartTime ContrastBolusStopTime
CountryOfResidence CreationDate CreationTime CurrentPatientLocation CurveDate CurveTime
CustodialOrganizationSequence DataSetTrailingPadding DateOfLastCalibration
DateOfLastDetectorCalibration DateOfSecondaryCapture DateTimeOfLastCalibration
DerivationDescription DetectorID DeviceDescription DeviceSettingDescription
DigitalSignaturesSequence DischargeDate DischargeDiagnosisDescription DischargeTime
DistributionAddress DistributionName DoseReferenceDescription EthnicGroup FirstTreatmentDate
FractionGroupDescription FrameComments GantryID GeneratorID GPSAltitude GPSAreaInformation
GPSDateStamp GPSLatitude GPSLongitude GPSProcessingMethod GPSTimeStamp HumanPerformerName
HumanPerformerOrganization IconImageSequence IdentifyingComments ImageComments
ImagePresentationComments ImagingServiceRequestComments Impressions
InstanceCoercionDateTime InstanceCreationDate InstanceOriginStatus InstitutionAddress
InstitutionalDepartmentName InstitutionalDepartmentTypeCodeSequence
InsurancePlanIdentification IntendedRecipientsOfResultsIdentificationSequence
InterpretationApprovalDate InterpretationApprovalTime InterpretationApproverSequence
InterpretationAuthor InterpretationDiagnosisDescription InterpretationID
InterpretationIDIssuer InterpretationRecordedDate InterpretationRecordedTime
InterpretationRecorder InterpretationText InterpretationTranscriber
InterpretationTranscriptionDate InterpretationTranscriptionTime InterventionDrugStartTime
InterventionDrugStopTime IssueDateOfImagingServiceRequest IssueTimeOfImagingServiceRequest
IssuerOfAdmissionID IssuerOfAdmissionIDSequence IssuerOfPatientID IssuerOfServiceEpisodeID
IssuerOfServiceEpisodeIDSequence LastMenstrualDate LensMake LensModel LensSerialNumber
LensSpecification MAC MakerNote MedicalAlerts MedicalRecordLocator MilitaryRank
ModifiedAttributesSequence ModifyingDeviceID MostRecentTreatmentDate
NameOfPhysiciansReadingStudy NamesOfIntendedRecipientsOfResults NetworkID Occupation
OperatorIdentificationSequence OrderCallbackPhoneNumber OrderCallbackTelecomInformation
OrderEnteredBy OrderEntererLocation OriginalAttributesSequence Originator OtherPatientIDs
OtherPatientIDsSequence OtherPatientNames OverlayDate OverlayTime ParticipantSequence
PatientAddress PatientAge PatientBirthName PatientBirthTime PatientComments
PatientInstitutionResidence PatientInsurancePlanCodeSequence PatientMotherBirthName
PatientPrimaryLanguageCodeSequence PatientPrimaryLanguageModifierCodeSequence
PatientReligiousPreference PatientSize PatientState PatientTelecomInformation
PatientTelephoneNumbers PatientTransportArrangements PatientWeight PerformedLocation
PerformedProcedureStepDescription PerformedProcedureStepEndDate
PerformedProcedureStepEndDateTime PerformedProcedureStepEndTime PerformedProcedureStepID
PerformedProcedureStepStartDate PerformedProcedureStepStartDateTime
PerformedProcedureStepStartTime PerformedStationAETitle
PerformedStationGeographicLocationCodeSequence PerformedStationName
PerformedStationNameCodeSequence PerformingPhysicianIdentificationSequence
PerformingPhysicianName PersonAddress PersonTelecomInformation PersonTelephoneNumbers
PhysicianApprovingInterpretation PhysiciansOfRecord PhysiciansOfRecordIdentificationSequence
PhysiciansReadingStudyIdentificationSequence PlateID PregnancyStatus PreMedication
PrescriptionDescription PresentationCreationDate PresentationCreationTime ProtocolName
RadiopharmaceuticalStartDateTime RadiopharmaceuticalStartTime
RadiopharmaceuticalStopDateTime RadiopharmaceuticalStopTime
ReasonForRequestedProcedureCodeSequence ReasonForStudy ReasonForTheImagingServiceRequest
ReasonForTheRequestedProcedure ReasonForVisit ReasonForVisitCodeSequence ReceivingAE
ReferencedDigitalSignatureSequence ReferencedPatientAliasSequence
ReferencedPatientPhotoSequence ReferencedPatientSequence ReferencedSOPInstanceMACSequence
ReferringPhysicianAddress ReferringPhysicianIdentificationSequence
ReferringPhysicianTelephoneNumbers RegionOfResidence RequestAttributesSequence
RequestedContrastAgent RequestedProcedureComments RequestedProcedureID
RequestedProcedureLocation RequestingAE RequestingPhysician RequestingService
ResponsibleOrganization ResponsiblePerson ResultsComments ResultsDistributionListSequence
ResultsID ResultsIDIssuer RetrieveAETitle ROIDescription ROIGenerationDescription
ROIObservationDescription ROIObservationLabel RTPlanDate RTPlanDescription RTPlanName
RTPlanTime ScheduledAdmissionDate ScheduledAdmissionTime ScheduledDischargeDate
ScheduledDischargeTime ScheduledHumanPerformersSequence ScheduledPatientInstitutionResidence
ScheduledPerformingPhysicianIdentificationSequence ScheduledPerformingPhysicianName
ScheduledProcedureStepDescription ScheduledProcedureStepEndDate
ScheduledProcedureStepEndTime ScheduledProcedureStepID ScheduledProcedureStepLocation
ScheduledProcedureStepStartDate ScheduledProcedureStepStartTime ScheduledStationAETitle
ScheduledStationGeographicLocationCodeSequence ScheduledStationName
ScheduledStationNameCodeSequence ScheduledStudyLocation ScheduledStudyLocationAETitle
ScheduledStudyStartDate ScheduledStudyStartTime ScheduledStudyStopDate
ScheduledStudyStopTime SeriesDate SeriesDescription SeriesTime ServiceEpisodeDescription
ServiceEpisodeID SmokingStatus SpecialNeeds SpecimenAccessionNumber
SpecimenDetailedDescription SpecimenShortDescription StationAETitle StructureSetDescription
StructureSetName StudyArrivalDate StudyArrivalTime StudyComments StudyCompletionDate
StudyCompletionTime StudyDescription StudyIDIssuer StudyReadDate StudyReadTime
StudyVerifiedDate StudyVerifiedTime TextComments TextString TimeOfLastCalibration
TimeOfLastDetectorCalibration TimeOfSecondaryCapture TimezoneOffsetFromUTC TopicAuthor
TopicKeywords TopicSubject TopicTitle TransducerIdentificationSequence TreatmentDate
TreatmentSites TreatmentTime UDISequence UniqueDeviceIdentifier VisitComments
"""
_U = """
AcquisitionUID ConcatenationUID DeviceUID DimensionOrganizationUID DoseReferenceUID
FailedSOPInstanceUIDList FiducialUID FrameOfReferenceUID InstanceCreatorUID
IrradiationEventUID LargePaletteColorLookupTableUID ManufacturerDeviceClassUID
MediaStorageSOPInstanceUID ObservationUID PaletteColorLookupTableUID PyramidUID
ReferencedDoseReferenceUID ReferencedFrameOfReferenceUID ReferencedSOPInstanceUID
ReferencedSOPInstanceUIDInFile RelatedFrameOfReferenceUID RequestedSOPInstanceUID
SeriesInstanceUID SOPInstanceUID SourceFrameOfReferenceUID SpecimenUID
StorageMediaFileSetUID StudyInstanceUID SynchronizationFrameOfReferenceUID TargetUID
TemplateExtensionCreatorUID TemplateExtensionOrganizationUID TrackingUID TransactionUID UID
"""

#: Keyword -> action of the Basic Profile as applied here (PS3.15 Table E.1-1).
BASIC_PROFILE: dict[str, Action] = {
    **{k: "X" for k in _X.split()},
    **{k: "Z" for k in _Z.split()},
    **{k: "D" for k in _D.split()},
    **{k: "U" for k in _U.split()},
}

# UI attributes naming classes, syntaxes or coding schemes, never an instance: kept.
_KEEP_UID_KEYWORDS = frozenset(
    {
        "SOPClassUID",
        "MediaStorageSOPClassUID",
        "ReferencedSOPClassUID",
        "ReferencedSOPClassUIDInFile",
        "TransferSyntaxUID",
        "ReferencedTransferSyntaxUIDInFile",
        "ImplementationClassUID",
        "CodingSchemeUID",
        "ContextUID",
        "MappingResourceUID",
        "RelatedGeneralSOPClassUID",
        "OriginalSpecializedSOPClassUID",
        "AffectedSOPClassUID",
        "RequestedSOPClassUID",
        "SOPClassesInStudy",
    }
)

# File meta attributes that can name sites or carry private content; the writer's
# implementation UID and version are dropped too (pydicom writes its own).
_FILE_META_REMOVE = frozenset(
    {
        "ImplementationClassUID",
        "ImplementationVersionName",
        "SourceApplicationEntityTitle",
        "SendingApplicationEntityTitle",
        "ReceivingApplicationEntityTitle",
        "SourcePresentationAddress",
        "SendingPresentationAddress",
        "ReceivingPresentationAddress",
        "PrivateInformationCreatorUID",
        "PrivateInformation",
    }
)

_DUMMY_TEXT = "ANONYMIZED"
_DUMMY_BY_VR: dict[str, Any] = {
    "AE": _DUMMY_TEXT,
    "AS": "000D",
    "CS": _DUMMY_TEXT,
    "DA": "19000101",
    "DS": "0",
    "DT": "19000101000000",
    "IS": "0",
    "LO": _DUMMY_TEXT,
    "LT": _DUMMY_TEXT,
    "PN": _DUMMY_TEXT,
    "SH": _DUMMY_TEXT,
    "ST": _DUMMY_TEXT,
    "TM": "000000",
    "UC": _DUMMY_TEXT,
    "UT": _DUMMY_TEXT,
}
_SAFETY_NET_VRS = frozenset({"PN", "DA", "DT", "TM"})
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})


def _tags(keywords: frozenset[str] | dict[str, Action]) -> dict[int, str]:
    out: dict[int, str] = {}
    for keyword in keywords:
        tag = tag_for_keyword(keyword)
        if tag is None:  # pragma: no cover - guarded by a test on the installed pydicom
            raise RuntimeError(f"pydicom does not know the DICOM keyword {keyword!r}")
        out[tag] = keyword
    return out


_ACTION_BY_TAG: dict[int, Action] = {
    tag: BASIC_PROFILE[keyword] for tag, keyword in _tags(BASIC_PROFILE).items()
}
_KEEP_UID_TAGS = frozenset(_tags(_KEEP_UID_KEYWORDS))
_FILE_META_REMOVE_TAGS = frozenset(_tags(_FILE_META_REMOVE))


def check_key(key: bytes) -> None:
    """Raise `InvalidInputError` unless `key` is non-empty bytes."""
    if not isinstance(key, bytes | bytearray) or not key:
        raise InvalidInputError("the pseudonymisation key must be non-empty bytes")


def pseudonymize(value: str, *, key: bytes, prefix: str = "P") -> str:
    """Return a short keyed pseudonym: `prefix` + 16 hex chars of HMAC-SHA256(key, value).

    Deterministic for the same value and key; without the key it cannot be reversed or
    recomputed. Surrounding whitespace of `value` is ignored.
    """
    check_key(key)
    text = str(value).strip()
    if not text:
        raise InvalidInputError("cannot pseudonymize an empty value")
    digest = hmac.new(key, b"medloop-pseudonym\x00" + text.encode(), hashlib.sha256)
    return f"{prefix}{digest.hexdigest()[:16]}"


def deidentify_uid(uid: str, *, key: bytes) -> str:
    """Map a UID to ``2.25.<128-bit int>`` by keyed hash: same UID + key, same result."""
    check_key(key)
    text = str(uid).strip().rstrip("\x00")
    digest = hmac.new(key, b"medloop-uid\x00" + text.encode(), hashlib.sha256).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def patient_identity(dataset: Dataset) -> str:
    """The value a dataset's pseudonym is derived from.

    PatientID when present (so ``pseudonymize(PatientID)`` is the pseudonym); else the
    patient name, else the study, else the instance UID (each prefixed by its kind).
    """
    patient_id = str(dataset.get("PatientID", "") or "").strip()
    if patient_id:
        return patient_id
    for keyword, kind in (
        ("PatientName", "name"),
        ("StudyInstanceUID", "study"),
        ("SOPInstanceUID", "instance"),
    ):
        value = str(dataset.get(keyword, "") or "").strip()
        if value:
            logger.warning("dataset has no PatientID; pseudonym derived from %s", keyword)
            return f"{kind}:{value}"
    raise InvalidInputError("dataset has no PatientID, PatientName or UID to pseudonymize")


def deidentify(dataset: Dataset, *, key: bytes) -> Dataset:
    """Return a de-identified copy of `dataset` (the input is not modified).

    PatientID and PatientName become ``pseudonymize(PatientID)``; see the module
    docstring for the rules. Adds PatientIdentityRemoved = YES, DeidentificationMethod,
    DeidentificationMethodCodeSequence (DCM 113100) and
    LongitudinalTemporalInformationModified = REMOVED.
    """
    check_key(key)
    pseudonym = pseudonymize(patient_identity(dataset), key=key)
    if str(dataset.get("BurnedInAnnotation", "")).upper() == "YES":
        logger.warning("BurnedInAnnotation is YES: pixel data may show identifying text")
    out = copy.deepcopy(dataset)
    if isinstance(out, FileDataset):
        out.filename = None  # the source path may itself name the patient
    _clean(out, key)
    meta = getattr(out, "file_meta", None)
    if isinstance(meta, FileMetaDataset):
        _clean_file_meta(out, meta, key)

    out.PatientID = pseudonym
    out.PatientName = pseudonym
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = DEIDENTIFICATION_METHOD
    code = Dataset()
    code.CodeValue = BASIC_PROFILE_CODE
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    out.DeidentificationMethodCodeSequence = Sequence([code])
    out.LongitudinalTemporalInformationModified = "REMOVED"
    return out


def _clean(ds: Dataset, key: bytes) -> None:
    """Apply the profile to `ds` in place, recursing into sequence items."""
    for tag in list(ds.keys()):
        if int(tag) in _PIXEL_TAGS:
            continue
        group = tag.group
        if (
            tag.is_private
            or tag.element == 0  # group lengths go stale once values change
            or group & 0xFF00 in (0x5000, 0x6000)  # curves and overlays
            or not dictionary_has_tag(tag)
        ):
            del ds[tag]
            continue
        elem = ds[tag]
        action = _ACTION_BY_TAG.get(int(tag))
        if action == "X":
            del ds[tag]
        elif action in ("Z", "D"):
            _blank(elem, dummy=action == "D")
        elif elem.VR == "SQ":
            for item in elem.value:
                _clean(item, key)
        elif elem.VR == "UI":
            _replace_uids(elem, key)
        elif elem.VR in _SAFETY_NET_VRS:
            _blank(elem, dummy=False)


def _blank(elem: DataElement, *, dummy: bool) -> None:
    """Empty an element (Z) or give it a dummy value consistent with its VR (D)."""
    if elem.VR == "SQ":
        elem.value = Sequence([])
    elif dummy and elem.VR in _DUMMY_BY_VR:
        elem.value = _DUMMY_BY_VR[elem.VR]
    else:
        elem.value = None


def _replace_uids(elem: DataElement, key: bytes) -> None:
    """Replace instance UIDs by keyed UIDs; keep class, syntax and registered UIDs."""
    if int(elem.tag) in _KEEP_UID_TAGS or elem.value in (None, ""):
        return

    def new(uid: str) -> str:
        return uid if str(uid) in UID_dictionary else deidentify_uid(uid, key=key)

    if elem.VM > 1:
        elem.value = [new(str(v)) for v in elem.value]
    else:
        elem.value = new(str(elem.value))


def _clean_file_meta(ds: Dataset, meta: FileMetaDataset, key: bytes) -> None:
    """Replace UIDs in the file meta, drop site names, and make it complete."""
    for tag in list(meta.keys()):
        if int(tag) in _FILE_META_REMOVE_TAGS or tag.is_private:
            del meta[tag]
        elif meta[tag].VR == "UI":
            _replace_uids(meta[tag], key)
    _complete_file_meta(ds, meta)


def _complete_file_meta(ds: Dataset, meta: FileMetaDataset) -> None:
    """Fill in the transfer syntax and the media storage UIDs from the dataset."""
    if "TransferSyntaxUID" not in meta:
        implicit, little = getattr(ds, "original_encoding", (None, None))
        if implicit:
            meta.TransferSyntaxUID = ImplicitVRLittleEndian
        elif little is False:
            meta.TransferSyntaxUID = ExplicitVRBigEndian
        else:
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID


def read_dicom(path: Path) -> Dataset:
    """Read a DICOM file (with or without the 128-byte preamble) or raise `IngestError`."""
    path = Path(path)
    if not path.is_file():
        raise IngestError(path, "file not found")
    try:
        try:
            ds = pydicom.dcmread(path)
        except InvalidDicomError:
            ds = pydicom.dcmread(path, force=True)
            if "SOPClassUID" not in ds and "PixelData" not in ds:
                raise IngestError(path, "not a DICOM file") from None
        for _ in ds.iterall():  # decode every element now, so corruption surfaces here
            pass
    except IngestError:
        raise
    except Exception as exc:  # pydicom raises many types on damaged files
        raise IngestError(path, f"not a readable DICOM file: {exc}") from exc
    return ds


def dicom_to_bytes(dataset: Dataset) -> bytes:
    """Encode a dataset as a DICOM Part 10 file (zeroed preamble, complete file meta).

    Fills in `dataset.file_meta` (transfer syntax, media storage UIDs) in place.
    """
    if not isinstance(getattr(dataset, "file_meta", None), FileMetaDataset):
        dataset.file_meta = FileMetaDataset()
    _complete_file_meta(dataset, dataset.file_meta)
    dataset.preamble = b"\x00" * 128
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.getvalue()


def deidentify_file(src: Path, dst: Path, *, key: bytes) -> str:
    """De-identify the DICOM file `src` into `dst`; return the patient pseudonym.

    Raises `IngestError` naming `src` if it is not a readable DICOM file.
    """
    check_key(key)
    dataset = read_dicom(src)
    try:
        out = deidentify(dataset, key=key)
    except InvalidInputError as exc:
        raise IngestError(src, str(exc)) from exc
    data = dicom_to_bytes(out)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data)
    logger.debug("wrote a de-identified DICOM file (%d bytes)", len(data))
    return str(out.PatientID)
