"""Topics the worker subscribes to by name must exist before it starts: a topic created after its consumer
subscribed is only seen at the next metadata refresh (5 minutes), which would hold a new table's first
changes, or a fresh installation's first delivery, that long."""
from __future__ import annotations

from typing import Iterable

from hisbridge import config


def ensure_topics(names: Iterable[str], client_id: str = "hisbridge-setup") -> list[str]:
    """Create the named topics that do not exist yet (1 partition, HISBRIDGE_TOPIC_REPLICATION, as the
    connector template does). Returns the topics created."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap(), client_id=client_id)
    try:
        missing = sorted(set(names) - set(admin.list_topics()))
        replication = config.env_int("HISBRIDGE_TOPIC_REPLICATION", 1)
        for name in missing:
            try:
                admin.create_topics([NewTopic(name, 1, replication)])
            except TopicAlreadyExistsError:   # someone (the connector, another worker) was faster
                pass
        return missing
    finally:
        admin.close()
