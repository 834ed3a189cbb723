"""The receivers outside the county in tests: the project's own local sink (riskwatch/tools/sink.py),
with scripted faults (``fail``, ``rate_limit``) and a 钉钉 fake that verifies the signature."""

from riskwatch.tools.sink import ReceiverSink as FakeReceivers
from riskwatch.tools.sink import Request
from riskwatch.tools.sink import SmtpSink as FakeSmtp

__all__ = ["FakeReceivers", "FakeSmtp", "Request"]
