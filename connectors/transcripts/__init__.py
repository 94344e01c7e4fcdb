"""Phone-call transcripts (Alibaba recording-file recognition, Amazon Connect Contact
Lens, a generic JSON format) from a drop folder and a signed webhook."""
