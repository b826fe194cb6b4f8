use super::call::CallId;
use super::webhook::{WebhookConfig, WebhookEvent};
use actix::prelude::*;
pub struct WebhookActor;
impl WebhookActor {
    pub fn new(_url: String, _secret: Vec<u8>, _c: WebhookConfig, _t: std::time::Duration) -> Self {
        Self
    }
}
impl Actor for WebhookActor {
    type Context = Context<Self>;
}
#[derive(Message)]
#[rtype(result = "()")]
pub struct Push {
    pub call_id: CallId,
    pub event: WebhookEvent,
}
#[derive(Message)]
#[rtype(result = "()")]
pub struct Finish {
    pub call_id: CallId,
}
impl Handler<Push> for WebhookActor {
    type Result = ();
    fn handle(&mut self, _: Push, _: &mut Context<Self>) {}
}
impl Handler<Finish> for WebhookActor {
    type Result = ();
    fn handle(&mut self, _: Finish, _: &mut Context<Self>) {}
}
