// Trawl on Azure: `azd up` provisions this (subscription scope: it creates the resource group),
// then deploys the app to the Function App tagged azd-service-name=api.
// Everything authenticates with the app's user-assigned managed identity: no storage key, no
// database password and no secret in any output.
targetScope = 'subscription'

@description('Required. Name of the azd environment; seeds resource names and tags.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Required. Region of every resource; must offer Flex Consumption.')
@minLength(1)
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Optional. Object id of the principal running azd (AZURE_PRINCIPAL_ID): gets data roles on storage and, unless postgresAdminGroupObjectId is set, becomes the PostgreSQL Entra administrator when principalName is also set. Empty for none.')
param principalId string = ''

@description('Optional. PostgreSQL name of that principal (AZURE_PRINCIPAL_NAME, set by infra/hooks/preprovision.sh): a user\'s user principal name or a service principal\'s display name, the role the post-provision hook signs in as.')
param principalName string = ''

@description('Optional. Kind of principal principalId is (AZURE_PRINCIPAL_TYPE, detected by infra/hooks/preprovision.sh): a CI service principal is not a User, and role assignments fail with UnmatchedPrincipalType when told otherwise.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param principalType string = 'User'

@description('Optional. Object id of an Entra group to make the only PostgreSQL Entra administrator instead of the principal running azd (TRAWL_POSTGRES_ADMIN_GROUP_ID); empty for none.')
param postgresAdminGroupObjectId string = ''

@description('Optional. Display name of that group (TRAWL_POSTGRES_ADMIN_GROUP_NAME): its members sign in to PostgreSQL under this name.')
param postgresAdminGroupName string = ''

@description('Required. Email address that receives alerts and API Management notifications (TRAWL_ALERT_EMAIL).')
@minLength(3)
param alertEmail string

@description('Required. Accepted access-token audiences of the Trawl API app registration, e.g. its Application ID URI (TRAWL_API_AUDIENCE).')
@minLength(1)
param apiAudiences array

@description('Optional. Client application ids allowed through API Management; empty allows any client of the tenant.')
param apiClientApplicationIds array = []

@description('Optional. Entra tenant whose tokens the API accepts.')
param apiTenantId string = tenant().tenantId

@description('Optional. Application (client) id the web dashboard signs in with (MSAL.js; a single-page-application redirect URI https://<function app>/api/app/); empty: the dashboard offers no sign-in (TRAWL_DASHBOARD_CLIENT_ID).')
param dashboardClientId string = ''

@description('Optional. API Management tier: Developer (default) or a v2/classic tier supports the per-caller rate-limit-by-key; Consumption does not.')
@allowed([
  'Consumption'
  'Developer'
  'BasicV2'
  'StandardV2'
  'Basic'
  'Standard'
  'Premium'
])
param apiManagementSku string = 'Developer'

@description('Optional. Calls per caller (token oid) per minute through API Management.')
@minValue(1)
param apiRateLimitPerMinute int = 60

@description('Optional. Memory of each Function App instance in MB: the instance sizes Flex Consumption offers.')
@allowed([
  512
  2048
  4096
])
param functionInstanceMemoryMB int = 2048

@description('Optional. Most instances the Function App scales out to (Flex Consumption accepts 40 to 1000); lowered to what the PostgreSQL connection budget allows (functionInstanceLimit).')
@minValue(40)
@maxValue(1000)
param functionMaximumInstanceCount int = 80

@description('Optional. Always-ready instances of the Durable Functions group; Microsoft recommends 1 on Flex Consumption. 0 turns it off (and its always-ready charge); at most 40, the fewest instances the app may be capped at.')
@minValue(0)
@maxValue(40)
param functionDurableAlwaysReadyInstances int = 1

@description('Optional. PostgreSQL connections each Function App instance pools (TRAWL_DATABASE_POOL_SIZE). At most 8, so that even Standard_B2s serves 40 instances: 40 x (8 + 2) + 5 <= 414.')
@minValue(1)
@maxValue(8)
param databasePoolSize int = 3

@description('Optional. PostgreSQL compute size; one of postgresSkus, whose connection limit sizes functionInstanceLimit. Standard_B1ms (35 user connections) cannot serve the 40 instances Flex Consumption allows at least.')
@allowed([
  'Standard_B2s'
  'Standard_B2ms'
  'Standard_B4ms'
  'Standard_B8ms'
  'Standard_D2ds_v5'
  'Standard_D4ds_v5'
  'Standard_D8ds_v5'
  'Standard_D16ds_v5'
  'Standard_E2ds_v5'
  'Standard_E4ds_v5'
  'Standard_E8ds_v5'
])
param postgresSkuName string = 'Standard_B2s'

@description('Optional. PostgreSQL storage in GB.')
param postgresStorageSizeGB int = 32

@description('Optional. Days of PostgreSQL point-in-time restore.')
@minValue(7)
@maxValue(35)
param postgresBackupRetentionDays int = 7

@description('Optional. Geo-redundant PostgreSQL backups (only settable at creation).')
param postgresGeoRedundantBackup bool = false

@description('Optional. Zone-redundant PostgreSQL high availability.')
param postgresZoneRedundantHa bool = false

@description('Optional. true: PostgreSQL has a public endpoint behind postgresFirewallRules; false: private access in a VNet the Function App integrates with.')
param postgresPublicAccess bool = true

@description('Optional. PostgreSQL firewall rules for public access. The default (0.0.0.0) admits Azure services only, which Flex Consumption needs because its outbound addresses are not fixed; Entra-only login is the real gate.')
param postgresFirewallRules array = [
  {
    name: 'AllowAllAzureServicesAndResourcesWithinAzureIps'
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
]

@description('Optional. Days Log Analytics keeps logs.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}

var functionAppName = '${abbrs.webSitesFunctions}trawl-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(toLower(uniqueString(functionAppName, resourceToken)), 7)}'
var postgresServerName = '${abbrs.dBforPostgreSQLFlexibleServers}trawl-${resourceToken}'
var apiManagementName = '${abbrs.apiManagementService}trawl-${resourceToken}'
var apiGatewayUrl = 'https://${apiManagementName}.azure-api.net'

// Names the app and the storage account must agree on.
var taskHubName = 'trawl'
var itemQueueName = 'scrape-items'
var rateLimitTableName = 'ratelimits'
var contentContainerName = 'trawl-content'
var databaseName = 'trawl'

// PostgreSQL compute sizes: their tier and Microsoft's documented default "maximum user
// connections" (max_connections less the 15 the service reserves), from "Limits in Azure Database
// for PostgreSQL flexible server". tests/infra checks the numbers against that table.
var postgresSkus = {
  Standard_B2s: {
    tier: 'Burstable'
    maxUserConnections: 414
  }
  Standard_B2ms: {
    tier: 'Burstable'
    maxUserConnections: 844
  }
  Standard_B4ms: {
    tier: 'Burstable'
    maxUserConnections: 1703
  }
  Standard_B8ms: {
    tier: 'Burstable'
    maxUserConnections: 3422
  }
  Standard_D2ds_v5: {
    tier: 'GeneralPurpose'
    maxUserConnections: 844
  }
  Standard_D4ds_v5: {
    tier: 'GeneralPurpose'
    maxUserConnections: 1703
  }
  Standard_D8ds_v5: {
    tier: 'GeneralPurpose'
    maxUserConnections: 3422
  }
  Standard_D16ds_v5: {
    tier: 'GeneralPurpose'
    maxUserConnections: 4985
  }
  Standard_E2ds_v5: {
    tier: 'MemoryOptimized'
    maxUserConnections: 1703
  }
  Standard_E4ds_v5: {
    tier: 'MemoryOptimized'
    maxUserConnections: 3422
  }
  Standard_E8ds_v5: {
    tier: 'MemoryOptimized'
    maxUserConnections: 4985
  }
}
var postgresSku = postgresSkus[postgresSkuName]
var postgresMaxUserConnections = postgresSku.maxUserConnections

// The connection budget: every instance holds up to databasePoolSize pooled connections plus two of
// its own (the event streams' LISTEN session; the schema migration at start-up, then each
// /api/health probe), and a few sessions stay free for people and the post-provision hook. Flex Consumption scales each function group on its
// own instances, all counted by maximumInstanceCount, so capping the instances caps the sessions.
var postgresReservedConnections = 5
var connectionsPerInstance = databasePoolSize + 2
var functionInstanceLimit = min(functionMaximumInstanceCount, (postgresMaxUserConnections - postgresReservedConnections) / connectionsPerInstance)

// One Entra administrator: a group when one is given, else the principal running azd. The app's
// identity is not one: the post-provision hook gives it a plain role that owns only its tables.
var developerCanBeAdministrator = !(empty(principalId) || empty(principalName))
var developerAdministrator = developerCanBeAdministrator ? [
  {
    objectId: principalId
    principalName: principalName
    principalType: principalType
  }
] : []
var groupAdministrator = [
  {
    objectId: postgresAdminGroupObjectId
    principalName: postgresAdminGroupName
    principalType: 'Group'
  }
]
var postgresAdministrators = empty(postgresAdminGroupObjectId) ? developerAdministrator : groupAdministrator

// Every app setting the Function App gets (plus APPLICATIONINSIGHTS_CONNECTION_STRING, which
// modules/function-app.bicep reads itself). One line per setting; tests/infra checks that every
// setting shared/settings.py reads is here.
var appSettings = {
  // Functions host storage (Durable task hub, timers), identity-based.
  AzureWebJobsStorage__blobServiceUri: storage.outputs.blobEndpoint
  AzureWebJobsStorage__queueServiceUri: storage.outputs.queueEndpoint
  AzureWebJobsStorage__tableServiceUri: storage.outputs.tableEndpoint
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.outputs.clientId
  // Trawl's own storage connection (item queue, rate-limit table, page bodies), identity-based.
  TrawlStorage__queueServiceUri: storage.outputs.queueEndpoint
  TrawlStorage__tableServiceUri: storage.outputs.tableEndpoint
  TrawlStorage__blobServiceUri: storage.outputs.blobEndpoint
  TrawlStorage__credential: 'managedidentity'
  TrawlStorage__clientId: identity.outputs.clientId
  AZURE_CLIENT_ID: identity.outputs.clientId
  // Telemetry: Entra-authenticated (the component has local auth disabled).
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identity.outputs.clientId}'
  // Trawl.
  TRAWL_ENVIRONMENT: 'azure'
  TRAWL_PUBLIC_BASE_URL: apiGatewayUrl
  TRAWL_TASK_HUB: taskHubName
  TRAWL_QUEUE_NAME: itemQueueName
  TRAWL_RECONCILE_SCHEDULE: '0 */1 * * * *'
  TRAWL_RETENTION_SCHEDULE: '0 17 * * * *'
  TRAWL_RETENTION_DAYS: '90'
  TRAWL_RECONCILE_GRACE_SECONDS: '60'
  TRAWL_DATABASE_AUTH: 'entra'
  TRAWL_DATABASE_HOST: postgres.outputs.fqdn
  TRAWL_DATABASE_NAME: databaseName
  TRAWL_DATABASE_USER: identity.outputs.name
  TRAWL_DATABASE_POOL_SIZE: string(databasePoolSize)
  TRAWL_MAX_URLS_PER_JOB: '1000'
  TRAWL_MAX_URL_LENGTH: '2048'
  TRAWL_MAX_BODY_BYTES: '1048576'
  TRAWL_DEFAULT_DEADLINE_SECONDS: '3600'
  TRAWL_MAX_DEADLINE_SECONDS: '86400'
  TRAWL_PROGRESS_TICK_SECONDS: '15'
  TRAWL_ENQUEUE_BATCH_SIZE: '250'
  TRAWL_FETCH_CONNECT_TIMEOUT: '5'
  TRAWL_FETCH_READ_TIMEOUT: '15'
  TRAWL_FETCH_TOTAL_TIMEOUT: '30'
  TRAWL_FETCH_MAX_BYTES: '5242880'
  TRAWL_FETCH_ALLOWED_NETWORKS: ''
  TRAWL_FETCH_ALLOWED_PORTS: '80,443'
  TRAWL_FETCH_MAX_ATTEMPTS: '5'
  TRAWL_RETRY_BASE_DELAY_SECONDS: '5'
  TRAWL_RETRY_MAX_DELAY_SECONDS: '300'
  TRAWL_API_THREADS: '8'
  TRAWL_STREAMS_PER_CALLER: '10'
  TRAWL_DASHBOARD_CLIENT_ID: dashboardClientId
  TRAWL_DASHBOARD_AUTHORITY: ''
  TRAWL_DASHBOARD_SCOPES: ''
  TRAWL_AUTH_MODE: 'entra'
  TRAWL_AUTH_TENANT_IDS: apiTenantId
  TRAWL_AUTH_AUDIENCES: join(apiAudiences, ',')
  TRAWL_AUTH_ISSUER_VERSIONS: '1,2'
  TRAWL_AUTH_JWKS_URL: ''
  TRAWL_AUTH_JWKS_REFETCH_SECONDS: '300'
  TRAWL_RATE_TABLE: rateLimitTableName
  TRAWL_CONTENT_CONTAINER: contentContainerName
  TRAWL_RATE_SUBMISSIONS_PER_MINUTE: '30'
  TRAWL_RATE_URLS_PER_DAY: '50000'
  TRAWL_RATE_RUNNING_JOBS: '10'
}

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}trawl-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}trawl-${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}trawl-${resourceToken}'
    location: location
    tags: tags
    retentionInDays: logRetentionDays
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    contentContainerName: contentContainerName
    queueNames: [
      itemQueueName
      '${itemQueueName}-poison'
    ]
    tableNames: [
      rateLimitTableName
    ]
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
  }
}

module roles 'modules/role-assignments.bicep' = {
  name: 'role-assignments'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    identityPrincipalId: identity.outputs.principalId
    developerPrincipalId: principalId
    developerPrincipalType: principalType
  }
}

module network 'modules/network.bicep' = if (!postgresPublicAccess) {
  name: 'network'
  scope: rg
  params: {
    name: '${abbrs.networkVirtualNetworks}trawl-${resourceToken}'
    location: location
    tags: tags
    networkSecurityGroupPrefix: '${abbrs.networkNetworkSecurityGroups}trawl-${resourceToken}-'
    postgresPrivateDnsZoneName: '${postgresServerName}.private.postgres.database.azure.com'
  }
}

module postgres 'modules/postgres.bicep' = {
  name: 'postgres'
  scope: rg
  params: {
    name: postgresServerName
    location: location
    tags: tags
    skuName: postgresSkuName
    skuTier: postgresSku.tier
    storageSizeGB: postgresStorageSizeGB
    backupRetentionDays: postgresBackupRetentionDays
    geoRedundantBackup: postgresGeoRedundantBackup
    zoneRedundantHa: postgresZoneRedundantHa
    publicAccess: postgresPublicAccess
    firewallRules: postgresFirewallRules
    delegatedSubnetId: postgresPublicAccess ? '' : network.outputs.postgresSubnetId
    privateDnsZoneId: postgresPublicAccess ? '' : network.outputs.postgresPrivateDnsZoneId
    administrators: postgresAdministrators
    databaseName: databaseName
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    planName: '${abbrs.webServerFarms}trawl-${resourceToken}'
    name: functionAppName
    location: location
    tags: tags
    azdServiceName: 'api'
    identityResourceId: identity.outputs.resourceId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    appSettings: appSettings
    instanceMemoryMB: functionInstanceMemoryMB
    maximumInstanceCount: functionInstanceLimit
    durableAlwaysReadyInstances: functionDurableAlwaysReadyInstances
    virtualNetworkSubnetId: postgresPublicAccess ? '' : network.outputs.appSubnetId
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
  }
  dependsOn: [
    roles
  ]
}

module apiManagement 'modules/api-management.bicep' = {
  name: 'api-management'
  scope: rg
  params: {
    name: apiManagementName
    location: location
    tags: tags
    skuName: apiManagementSku
    publisherEmail: alertEmail
    functionAppHostName: functionApp.outputs.defaultHostName
    tenantId: apiTenantId
    audiences: apiAudiences
    clientApplicationIds: apiClientApplicationIds
    rateLimitCalls: apiRateLimitPerMinute
    rateLimitRenewalPeriod: 60
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    namePrefix: 'trawl-${resourceToken}-'
    actionGroupName: '${abbrs.insightsActionGroups}trawl-${resourceToken}'
    alertEmail: alertEmail
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    postgresServerId: postgres.outputs.resourceId
  }
}

// Names and endpoints only: azd stores these in .azure/<env>/.env, and the hooks read them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_MANAGED_IDENTITY_NAME string = identity.outputs.name
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_API_NAME string = functionApp.outputs.name
output SERVICE_API_URI string = 'https://${functionApp.outputs.defaultHostName}'
output AZURE_POSTGRES_SERVER_NAME string = postgres.outputs.name
output AZURE_POSTGRES_HOST string = postgres.outputs.fqdn
output AZURE_POSTGRES_DATABASE string = postgres.outputs.databaseName
output AZURE_POSTGRES_PUBLIC_ACCESS bool = postgresPublicAccess
output AZURE_POSTGRES_ADMIN_NAME string = empty(postgresAdministrators) ? '' : postgresAdministrators[0].principalName
output AZURE_API_MANAGEMENT_NAME string = apiManagement.outputs.name
output TRAWL_API_GATEWAY_URL string = apiManagement.outputs.gatewayUrl
output AZURE_APPLICATION_INSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output AZURE_LOG_ANALYTICS_NAME string = monitoring.outputs.logAnalyticsName
