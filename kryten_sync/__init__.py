"""kryten-sync: a synchronous, thread-safe client for the Kryten CyTube/NATS ecosystem."""

from .bridge import BridgeError
from .client import KrytenClient
from .commands import COMMANDS, CommandSpec
from .config import ChannelConfig, KrytenConfig, MetricsConfig, NatsConfig, ServiceConfig
from .errors import (
    ClientClosedError,
    ForkedProcessError,
    KrytenConnectionError,
    KrytenError,
    KrytenTimeoutError,
    KrytenValidationError,
    LoopDiedError,
    NoRespondersError,
    NotConnectedError,
    PublishError,
    WrongThreadError,
)
from .events import (
    ChangeMediaEvent,
    ChatMessageEvent,
    Event,
    MalformedEventError,
    MediaDeletedEvent,
    MediaInfo,
    MediaQueuedEvent,
    MediaUpdateEvent,
    MotdEvent,
    PlaylistItem,
    PlaylistUpdateEvent,
    PrivateMessageEvent,
    RawEvent,
    UserCountEvent,
    UserJoinEvent,
    UserLeaveEvent,
)
from .kv import (
    BucketConfigError,
    BucketNotFoundError,
    KeyValueError,
    KeyValueStore,
    KvEntry,
    KvWatch,
)
from .raw import Message, Subscription
from .state import ChannelUser, CurrentMedia, Emote, UserMeta, UserProfile
from .stats import ChannelStatus, HealthStatus
from .streams import EventStream

__version__ = "0.1.0"

__all__ = [
    "COMMANDS",
    "BridgeError",
    "BucketConfigError",
    "BucketNotFoundError",
    "ChangeMediaEvent",
    "ChannelConfig",
    "ChannelStatus",
    "ChannelUser",
    "ChatMessageEvent",
    "ClientClosedError",
    "CommandSpec",
    "CurrentMedia",
    "Emote",
    "Event",
    "EventStream",
    "ForkedProcessError",
    "HealthStatus",
    "KeyValueError",
    "KeyValueStore",
    "KrytenClient",
    "KrytenConfig",
    "KrytenConnectionError",
    "KrytenError",
    "KrytenTimeoutError",
    "KrytenValidationError",
    "KvEntry",
    "KvWatch",
    "LoopDiedError",
    "MalformedEventError",
    "MediaDeletedEvent",
    "MediaInfo",
    "MediaQueuedEvent",
    "MediaUpdateEvent",
    "Message",
    "MetricsConfig",
    "MotdEvent",
    "NatsConfig",
    "NoRespondersError",
    "NotConnectedError",
    "PlaylistItem",
    "PlaylistUpdateEvent",
    "PrivateMessageEvent",
    "PublishError",
    "RawEvent",
    "ServiceConfig",
    "Subscription",
    "UserCountEvent",
    "UserJoinEvent",
    "UserLeaveEvent",
    "UserMeta",
    "UserProfile",
    "WrongThreadError",
    "__version__",
]
