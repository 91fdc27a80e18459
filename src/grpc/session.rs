//! `portcullis.v1.SessionService` over gRPC: CreateSession, ReissueSession and DestroySession,
//! deciding exactly as `POST /sessions`, `/sessions/reissue` and `/sessions/destroy` do (the
//! same functions in `api::service`); only the wire and the refusals' rendering differ.
//! DestroySession takes the session's token in the `authorization: Bearer …` metadata.

use crate::api::caller::{current, no_session};
use crate::api::service::{CreateAsk, create_session, issued_message, reissue_session};
use crate::error::ApiError;
use crate::gateway::{ConnInfo, GatewayState};
use crate::grpc::status::from_api;
use crate::proto::session_service_server::SessionService;
use crate::proto::{
    CreateSessionRequest, CreateSessionResponse, DestroySessionRequest, DestroySessionResponse,
    ReissueSessionRequest, ReissueSessionResponse,
};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The service for one call: the configuration it started on, and who is calling.
pub struct Sessions {
    pub shared: Arc<GatewayState>,
    pub conn: ConnInfo,
}

#[tonic::async_trait]
impl SessionService for Sessions {
    async fn create_session(
        &self,
        request: Request<CreateSessionRequest>,
    ) -> Result<Response<CreateSessionResponse>, Status> {
        let headers = request.metadata().clone().into_headers();
        let m = request.into_inner();
        let ask = CreateAsk {
            username: m.username,
            password: m.password,
            device_uuid: Some(m.device_uuid),
        };
        let issued = create_session(&self.shared, &self.conn, &headers, ask)
            .await
            .map_err(from_api)?;
        Ok(Response::new(issued_message(&issued)))
    }

    async fn reissue_session(
        &self,
        request: Request<ReissueSessionRequest>,
    ) -> Result<Response<ReissueSessionResponse>, Status> {
        let presented = request.into_inner().reissue_token;
        if presented.is_empty() {
            return Err(from_api(ApiError::field(
                "missing_field",
                "reissue_token",
                "required",
            )));
        }
        let issued = reissue_session(&self.shared, &presented)
            .await
            .map_err(from_api)?;
        let m = issued_message(&issued);
        Ok(Response::new(ReissueSessionResponse {
            auth_token: m.auth_token,
            reissue_token: m.reissue_token,
            exp: m.exp,
            user_id: m.user_id,
            username: m.username,
            user_uuid: m.user_uuid,
        }))
    }

    async fn destroy_session(
        &self,
        request: Request<DestroySessionRequest>,
    ) -> Result<Response<DestroySessionResponse>, Status> {
        let headers = request.metadata().clone().into_headers();
        let live = current(&self.shared, &self.conn, &headers)
            .await
            .map_err(from_api)?
            .ok_or_else(|| from_api(no_session()))?;
        if let Err(e) = self.shared.sessions.revoke(live.id()).await {
            tracing::warn!(error = %e, "destroy failed");
            return Err(from_api(ApiError::from(&e)));
        }
        Ok(Response::new(DestroySessionResponse {}))
    }
}
