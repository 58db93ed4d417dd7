"""Features a service bot switches on: lifecycle announcements, health and metrics."""
