"""The platform simulator: a real HTTP service that plays a platform receiving notices."""
