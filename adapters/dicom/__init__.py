"""DICOM: storage SCP, query/retrieve, DICOMweb and ImagingStudy in the shared record.

Public API (everything else is implementation):

- :class:`DicomService`, :class:`DicomConfig` and :func:`serve` (``service.py``): the
  assembled adapter; ``hie dicom`` and ``hie serve`` start it.
- :class:`Records` (``ports.py``): what the adapter needs from ``hie.exchange``.
- :data:`metadata` (``models.py``): the adapter's tables, for the Alembic migration.
- :func:`create_blueprint` (``dicomweb.py``, imported from there: it needs Flask).
- :func:`dicom_group` (``cli.py``): the ``hie dicom`` commands.
- :func:`mrn_system` (``identifiers.py``): the identifier system of one organisation's MRNs.
"""

from adapters.dicom.identifiers import mrn_system
from adapters.dicom.index import DuplicatePolicy, session_factory
from adapters.dicom.models import metadata
from adapters.dicom.ports import Records
from adapters.dicom.service import DicomConfig, DicomService, serve

__all__ = [
    "DicomConfig",
    "DicomService",
    "DuplicatePolicy",
    "Records",
    "metadata",
    "mrn_system",
    "serve",
    "session_factory",
]
