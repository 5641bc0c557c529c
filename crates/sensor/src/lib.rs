//! Kernel event sources: fanotify permission events and the netlink process connector.
