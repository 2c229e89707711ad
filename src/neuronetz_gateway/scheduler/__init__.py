"""Fair share of Ollama: slots per server and the gateway's weighted fair queue
(docs/SCHEDULING.md, docs/REFERENCE.md §10)."""

from neuronetz_gateway.scheduler.errors import server_busy
from neuronetz_gateway.scheduler.grants import Grant, Prefetch, WaitTicket
from neuronetz_gateway.scheduler.layout import Layout, ServerSlots, server_id
from neuronetz_gateway.scheduler.slots import SlotScheduler
from neuronetz_gateway.scheduler.store import QueueUnavailable, ScriptStore
from neuronetz_gateway.scheduler.tries import SlotRequest

__all__ = [
    "Grant",
    "Layout",
    "Prefetch",
    "QueueUnavailable",
    "ScriptStore",
    "ServerSlots",
    "SlotRequest",
    "SlotScheduler",
    "WaitTicket",
    "server_busy",
    "server_id",
]
