"""Model image registries, one per region: ECR (AWS) and Artifact Registry (GCP).

The in-cluster build consumer pushes each deployment's image here and replicas pull it by
digest from their own region. Tags are immutable (a tag names one image forever), every push
is scanned (ECR basic scanning; Artifact Registry relies on Container Analysis, enabled per
project), and a lifecycle keeps the registry bounded: untagged images (layers left by
interrupted pushes) expire after ``untagged_days``, and only the newest ``keep_images``
tagged images stay. GPU nodes can already pull: the EKS node role has
``AmazonEC2ContainerRegistryReadOnly`` (infra/eks.py), the GKE node service account
``roles/artifactregistry.reader`` (infra/gke.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp

from infra.exceptions import InfraConfigError
from infra.tags import StandardTags

MODEL_REPOSITORY = "plinth-models"


@dataclass(frozen=True)
class ModelRegistryArgs:
    tags: StandardTags
    repository_name: str = MODEL_REPOSITORY
    # High: an expired image is one a deployment can no longer roll back to.
    keep_images: int = 1000
    untagged_days: int = 7
    location: str | None = None  # GCP only: the region (default: the tags' region)

    def __post_init__(self) -> None:
        if self.keep_images < 1:
            raise InfraConfigError("keep_images", f"{self.keep_images} < 1")
        if self.untagged_days < 1:
            raise InfraConfigError("untagged_days", f"{self.untagged_days} < 1")


def ecr_lifecycle_policy(args: ModelRegistryArgs) -> str:
    rules = [
        {
            "rulePriority": 1,
            "description": f"untagged images after {args.untagged_days} days",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": args.untagged_days,
            },
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 2,
            "description": f"keep the newest {args.keep_images} images",
            "selection": {
                "tagStatus": "any",
                "countType": "imageCountMoreThan",
                "countNumber": args.keep_images,
            },
            "action": {"type": "expire"},
        },
    ]
    return json.dumps({"rules": rules})


class EcrModelRegistry(pulumi.ComponentResource):
    repository_url: pulumi.Output[str]
    repository_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: ModelRegistryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("plinth:registries:EcrModelRegistry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        repository = aws.ecr.Repository(
            name,
            name=args.repository_name,
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
                scan_on_push=True
            ),
            encryption_configurations=[
                aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="KMS")
            ],
            tags=args.tags.aws("registry"),
            opts=child,
        )
        aws.ecr.LifecyclePolicy(
            name, repository=repository.name, policy=ecr_lifecycle_policy(args), opts=child
        )
        self.repository_url = repository.repository_url
        self.repository_arn = repository.arn
        self.register_outputs(
            {"repository_url": self.repository_url, "repository_arn": self.repository_arn}
        )


class ArtifactModelRegistry(pulumi.ComponentResource):
    repository_url: pulumi.Output[str]

    def __init__(
        self, name: str, args: ModelRegistryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("plinth:registries:ArtifactModelRegistry", name, None, opts)
        location = args.location or args.tags.region
        repository = gcp.artifactregistry.Repository(
            name,
            repository_id=args.repository_name,
            location=location,
            format="DOCKER",
            description="Plinth model images (one per deployment, pulled by digest)",
            docker_config=gcp.artifactregistry.RepositoryDockerConfigArgs(immutable_tags=True),
            cleanup_policy_dry_run=False,
            cleanup_policies=[
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="untagged",
                    action="DELETE",
                    condition=gcp.artifactregistry.RepositoryCleanupPolicyConditionArgs(
                        tag_state="UNTAGGED", older_than=f"{args.untagged_days * 86400}s"
                    ),
                ),
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="keep-newest",
                    action="KEEP",
                    most_recent_versions=gcp.artifactregistry.RepositoryCleanupPolicyMostRecentVersionsArgs(
                        keep_count=args.keep_images
                    ),
                ),
            ],
            labels=args.tags.gcp("registry"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.repository_url = repository.project.apply(
            lambda project: f"{location}-docker.pkg.dev/{project}/{args.repository_name}"
        )
        self.register_outputs({"repository_url": self.repository_url})
