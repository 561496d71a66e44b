//! Self-confinement of the action binaries (capability assertion, landlock).
