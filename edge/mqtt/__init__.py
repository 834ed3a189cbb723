"""MQTT devices: mosquitto's generated files (broker), the device registry (registry), a message →
readings (convert) and the at-least-once MQTT → Kafka bridge (bridge). docs/mqtt.md; ``riskwatch mqtt``."""
