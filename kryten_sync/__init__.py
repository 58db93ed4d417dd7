"""kryten-sync: a synchronous, thread-safe client for the Kryten CyTube/NATS ecosystem."""

from .bridge import BridgeError
from .client import KrytenClient
from .commands import COMMANDS, CommandSpec
from .config import (
    ChannelConfig,
    CommandsConfig,
    EventsConfig,
    KrytenConfig,
    MetricsConfig,
    NatsConfig,
    ServiceConfig,
)
from .confirm import Confirmation
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
    StreamConfigError,
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
from .kv_store import (
    get_kv_store,
    get_or_create_kv_store,
    kv_delete,
    kv_get,
    kv_get_all,
    kv_keys,
    kv_put,
)
from .raw import Message, Subscription
from .service.lifecycle_events import LifecycleEventPublisher
from .service.metrics_server import BaseMetricsServer, SimpleMetricsServer
from .state import ChannelUser, CurrentMedia, Emote, UserMeta, UserProfile
from .stats import ChannelStatus, HealthStatus
from .streams import EventStream
from .testing import MockKrytenClient

__version__ = "0.1.0"

__all__ = [
    "COMMANDS",
    "BaseMetricsServer",
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
    "CommandsConfig",
    "Confirmation",
    "CurrentMedia",
    "Emote",
    "Event",
    "EventStream",
    "EventsConfig",
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
    "LifecycleEventPublisher",
    "LoopDiedError",
    "MalformedEventError",
    "MediaDeletedEvent",
    "MediaInfo",
    "MediaQueuedEvent",
    "MediaUpdateEvent",
    "Message",
    "MetricsConfig",
    "MockKrytenClient",
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
    "SimpleMetricsServer",
    "StreamConfigError",
    "Subscription",
    "UserCountEvent",
    "UserJoinEvent",
    "UserLeaveEvent",
    "UserMeta",
    "UserProfile",
    "WrongThreadError",
    "__version__",
    "get_kv_store",
    "get_or_create_kv_store",
    "kv_delete",
    "kv_get",
    "kv_get_all",
    "kv_keys",
    "kv_put",
]
