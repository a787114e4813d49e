"""runtime.topics.read_at on the real broker: the messages at the given offsets of a topic and nothing else,
near ones read on from one fetch, far ones reached by a seek, offsets past the end missing from the answer."""
from __future__ import annotations

import pytest
from hisbridge.runtime.topics import ensure_topics, read_at

pytestmark = pytest.mark.stack


def test_messages_are_read_at_their_offsets(settings, resources):
    from kafka import KafkaProducer
    bootstrap = settings.connections.kafka_bootstrap
    topic = resources.topics(f"readat{resources.id}")
    ensure_topics(bootstrap, [topic])
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(3000):
        producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    producer.flush()
    producer.close()
    wanted = [3, 4, 5, 40, 2500, 2999]
    found = read_at(bootstrap, [(topic, 0, o) for o in [*wanted, 3000, 12_000]])
    assert found == {(topic, 0, o): (f"k{o}".encode(), f"v{o}".encode()) for o in wanted}
