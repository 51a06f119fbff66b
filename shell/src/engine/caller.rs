//! Who is calling: the identity the HTTP layer extracted from a verified JWT.

/// Roles that grant the admin routes.
pub const ADMIN_ROLES: [&str; 2] = ["admin", "chat_admin"];

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `user_id` claim.
    pub user_id: String,
    /// `name` claim, or the user id when absent, empty or not a string.
    pub name: String,
    /// `roles` claim.
    pub roles: Vec<String>,
}

impl Caller {
    /// Whether the caller holds `admin` or `chat_admin`.
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| ADMIN_ROLES.contains(&r.as_str()))
    }
}
