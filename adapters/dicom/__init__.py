"""DICOM: storage SCP, query/retrieve, DICOMweb and ImagingStudy."""
