"""The platform's own PKI services, assembled from signing mechanisms and directory storage."""
